-- The appliance's own state: users, projects, branches, builds and their history.

CREATE TABLE users (
    id            serial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Tokens for git over HTTPS and scripts; only a hash is kept.
CREATE TABLE tokens (
    id           serial PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES users ON DELETE CASCADE,
    label        text NOT NULL DEFAULT '',
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

CREATE TABLE projects (
    id                serial PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,39}$'),
    odoo_version      text NOT NULL,
    db_role           text NOT NULL UNIQUE,
    db_password       text NOT NULL,
    modules           text NOT NULL DEFAULT '',   -- '' = every module of the branch
    test_tags         text NOT NULL DEFAULT '',
    production_branch text NOT NULL DEFAULT 'main',
    demo              boolean NOT NULL DEFAULT false,  -- runs on the offline stand-in
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_members (
    project_id integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    user_id    integer NOT NULL REFERENCES users ON DELETE CASCADE,
    role       text NOT NULL DEFAULT 'developer' CHECK (role IN ('admin', 'developer', 'tester')),
    PRIMARY KEY (project_id, user_id)
);

CREATE TABLE branches (
    id         serial PRIMARY KEY,
    project_id integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    name       text NOT NULL,
    stage      text NOT NULL DEFAULT 'development'
               CHECK (stage IN ('production', 'staging', 'development')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE builds (
    id             serial PRIMARY KEY,
    project_id     integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    branch_id      integer NOT NULL REFERENCES branches ON DELETE CASCADE,
    commit         text NOT NULL,
    commit_message text NOT NULL DEFAULT '',
    author         text NOT NULL DEFAULT '',
    stage          text NOT NULL,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'preparing', 'installing', 'testing', 'starting',
                                    'running', 'stopped', 'failed', 'done', 'dropped')),
    result         text CHECK (result IN ('success', 'warning', 'failure')),
    reason         text NOT NULL DEFAULT '',
    priority       integer NOT NULL DEFAULT 10,   -- lower runs first: production 0
    attempts       integer NOT NULL DEFAULT 0,
    database       text,
    host_port      integer,
    failed_tests   jsonb NOT NULL DEFAULT '[]',
    warnings       jsonb NOT NULL DEFAULT '[]',
    image          text,
    modules        text NOT NULL DEFAULT '',   -- the modules installed, comma separated
    addons_dirs    text NOT NULL DEFAULT '',   -- their folders in the branch, comma separated
    created_by     integer REFERENCES users ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    last_used_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX builds_queue ON builds (priority, id) WHERE state = 'queued';
CREATE INDEX builds_branch ON builds (branch_id, id DESC);

CREATE TABLE build_steps (
    build_id    integer NOT NULL REFERENCES builds ON DELETE CASCADE,
    position    integer NOT NULL,
    name        text NOT NULL,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'failed', 'skipped')),
    detail      text NOT NULL DEFAULT '',
    started_at  timestamptz,
    finished_at timestamptz,
    seconds     double precision,
    PRIMARY KEY (build_id, name)
);

CREATE TABLE events (
    id         bigserial PRIMARY KEY,
    project_id integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    branch_id  integer REFERENCES branches ON DELETE CASCADE,
    build_id   integer REFERENCES builds ON DELETE SET NULL,
    user_id    integer REFERENCES users ON DELETE SET NULL,
    kind       text NOT NULL,
    message    text NOT NULL DEFAULT '',
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_branch ON events (branch_id, id DESC);

-- Work asked of the workers that is not a build: start a stopped server, ...
CREATE TABLE tasks (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('start_server', 'stop_server')),
    build_id   integer NOT NULL REFERENCES builds ON DELETE CASCADE,
    user_id    integer REFERENCES users ON DELETE SET NULL,
    state      text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    error      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_queue ON tasks (id) WHERE state = 'queued';

-- This appliance's identity: containers are labelled with it, so two appliances (or test
-- runs) sharing one Docker engine never touch each other's containers.
CREATE TABLE appliance_instance (
    id text PRIMARY KEY
);
INSERT INTO appliance_instance (id) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 12));
