-- Restores and imports are builds of the target branch (production or staging): their
-- progress, steps, logs and history are a build's. `source` says where the data comes
-- from: {"backup": <backup id>} or {"file": "<path>", "name": "<as uploaded>",
-- "remove_after": true|false}; {} for a build of pushed code on its usual data.
ALTER TABLE builds DROP CONSTRAINT builds_trigger_check;
ALTER TABLE builds ADD CONSTRAINT builds_trigger_check
    CHECK (trigger IN ('push', 'rebuild', 'merge', 'refresh', 'restore', 'import'));
ALTER TABLE builds ADD COLUMN source jsonb NOT NULL DEFAULT '{}';
