-- Uploads: a file sent from the browser in chunks (or fetched from a URL by the CLI) to be
-- imported into a branch. Its bytes are under <data_dir>/uploads/<id>/, written by the
-- daemon only; this row says how many have arrived, so a dropped connection resumes.

CREATE TABLE uploads (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{16,64}$'),  -- random, unguessable
    user_id     integer REFERENCES users ON DELETE CASCADE,  -- NULL: the command line's
    project_id  integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    name        text NOT NULL,                               -- the file's name, as given
    size        bigint NOT NULL CHECK (size > 0),            -- announced before the first byte
    received    bigint NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= size),
    sha256      text CHECK (sha256 ~ '^[0-9a-f]{64}$'),      -- optional, checked at the end
    state       text NOT NULL DEFAULT 'receiving'
                CHECK (state IN ('receiving', 'complete', 'imported')),
    build_id    integer REFERENCES builds ON DELETE SET NULL, -- the import it became
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_updated ON uploads (updated_at);

-- Tasks that are not about a build: "Back up now" of a branch runs in the task pool.
ALTER TABLE tasks ALTER COLUMN build_id DROP NOT NULL;
ALTER TABLE tasks ADD COLUMN project_id integer REFERENCES projects ON DELETE CASCADE;
ALTER TABLE tasks ADD COLUMN branch_id integer REFERENCES branches ON DELETE CASCADE;
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check
    CHECK (kind IN ('start_server', 'stop_server', 'gc', 'backup'));
ALTER TABLE tasks ADD CONSTRAINT tasks_has_subject
    CHECK (build_id IS NOT NULL OR (kind = 'backup' AND branch_id IS NOT NULL));
CREATE INDEX tasks_branch ON tasks (branch_id) WHERE branch_id IS NOT NULL;
