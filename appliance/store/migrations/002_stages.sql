-- Stages: what a push to a staging branch does, why a build was made, the deploy plan.

ALTER TABLE branches ADD COLUMN push_behaviour text NOT NULL DEFAULT 'new'
    CHECK (push_behaviour IN ('new', 'update', 'nothing'));

ALTER TABLE builds ADD COLUMN trigger text NOT NULL DEFAULT 'push'
    CHECK (trigger IN ('push', 'rebuild', 'merge', 'refresh'));
-- What the pipeline decided: production first/fast/full deploy, staging copy/update.
ALTER TABLE builds ADD COLUMN deploy text NOT NULL DEFAULT '';
-- The update plan: {"update": {module: [old, new]}, "install": [...], "image": reason}.
ALTER TABLE builds ADD COLUMN plan jsonb NOT NULL DEFAULT '{}';
-- Odoo's data dir of the build when it is not the build's own (production shares one).
ALTER TABLE builds ADD COLUMN data_dir text;

ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check
    CHECK (kind IN ('start_server', 'stop_server', 'gc'));

-- At most one production branch per project, even with two requests at once.
CREATE UNIQUE INDEX branches_one_production ON branches (project_id) WHERE stage = 'production';
