-- Backups: one row per backup attempt. The data is in the restic repository: a backup is
-- two snapshots tagged backup=<id> (the database dump, read from stdin, and the files).

CREATE TABLE backups (
    id             serial PRIMARY KEY,
    project_id     integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    branch_id      integer REFERENCES branches ON DELETE SET NULL,
    build_id       integer REFERENCES builds ON DELETE SET NULL,
    kind           text NOT NULL CHECK (kind IN ('daily', 'update', 'manual', 'safety')),
    state          text NOT NULL DEFAULT 'running'
                   CHECK (state IN ('running', 'done', 'failed')),
    created_by     integer REFERENCES users ON DELETE SET NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    seconds        double precision,      -- how long it took
    dump_snapshot  text,                  -- restic snapshot ids
    files_snapshot text,
    dump_bytes     bigint,                -- the pg_dump -Fc stream
    files_bytes    bigint,                -- filestore, sessions, logs, manifest
    bytes_added    bigint,                -- new data in the repository (restic's data_added)
    sha256         text,                  -- of the dump
    manifest       jsonb NOT NULL DEFAULT '{}',
    error          text NOT NULL DEFAULT '',
    warnings       text NOT NULL DEFAULT '',  -- a done backup some files of which were unreadable
    forgotten_at   timestamptz            -- removed from the repository by retention
);
CREATE INDEX backups_project ON backups (project_id, id DESC);
CREATE INDEX backups_running ON backups (project_id) WHERE state = 'running';
