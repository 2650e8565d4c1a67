-- Copies of the backup repository off the box, and the checks that backups can be read.

-- A copy target: another restic repository (a folder on a mounted disk, sftp:, s3:,
-- rest:) that every backup is copied to. Its password and credentials are not here: they
-- are in files (0600) under <data_dir>/backups/targets/<name>/.
CREATE TABLE backup_targets (
    id                 serial PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,39}$'),
    location           text NOT NULL,
    options            jsonb NOT NULL DEFAULT '{}',  -- not secret: e.g. {"ssh_port": 2222}
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_attempt_at    timestamptz,
    last_ok_at         timestamptz,
    failing_since      timestamptz,         -- the first failure since the last success
    last_error         text NOT NULL DEFAULT '',
    last_copied_backup integer REFERENCES backups ON DELETE SET NULL
);

-- A nightly (or asked for) restore of a backup into a scratch database and folder.
CREATE TABLE backup_verifications (
    id          serial PRIMARY KEY,
    project_id  integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    backup_id   integer REFERENCES backups ON DELETE CASCADE,
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'ok', 'failed')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    seconds     double precision,
    details     jsonb NOT NULL DEFAULT '{}',   -- counts compared, files checked
    error       text NOT NULL DEFAULT ''       -- what did not match, for people
);
CREATE INDEX backup_verifications_project ON backup_verifications (project_id, id DESC);

-- `restic check --read-data-subset` of the appliance's repository.
CREATE TABLE repository_checks (
    id               serial PRIMARY KEY,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    seconds          double precision,
    read_data_subset text NOT NULL DEFAULT '',
    ok               boolean,
    output           text NOT NULL DEFAULT ''
);
