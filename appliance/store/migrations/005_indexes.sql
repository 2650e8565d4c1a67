-- Indexes for projects of agency size (a hundred branches of a hundred builds and more).

-- A project's newest builds: the builds API and its pages (?before=), the projects list.
CREATE INDEX builds_project ON builds (project_id, id DESC);
-- Is anything of a project queued or being built? The project page polls only then.
CREATE INDEX builds_in_progress ON builds (project_id)
    WHERE state IN ('queued', 'preparing', 'installing', 'testing', 'starting');
-- Foreign keys to builds: removing a build (ON DELETE SET NULL / CASCADE) and a build's
-- pending tasks read these instead of the whole table.
CREATE INDEX events_build ON events (build_id);
CREATE INDEX tasks_build ON tasks (build_id);
