-- An archived project: its servers stopped, pushes and changes refused, hidden from its
-- members' lists (not from appliance admins'); its data and backups kept.
ALTER TABLE projects ADD COLUMN archived_at timestamptz;

-- The audit trail: every state-changing action, from the web (forms and API), git
-- pushes and the command line, with its outcome, refusals included. Names are copied in
-- (user_name, project_name) so a row still says who and where after a rename or a
-- deletion. `details` holds only fields known to be safe (appliance.store.audit): never
-- a password, token, code or file content. Rows older than [audit] retention_days go.
CREATE TABLE audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL CHECK (source IN ('web', 'git', 'cli')),
    user_id      integer REFERENCES users ON DELETE SET NULL,
    user_name    text NOT NULL DEFAULT '',    -- the appliance user; the system account for the CLI
    address      text NOT NULL DEFAULT '',    -- the client's address, '' when unknown
    action       text NOT NULL,               -- 'branches.merge', 'git.push', 'cli.project create'
    project_id   integer REFERENCES projects ON DELETE SET NULL,
    project_name text NOT NULL DEFAULT '',
    branch       text NOT NULL DEFAULT '',
    build_id     integer,                     -- no reference: builds are dropped, rows stay
    status       integer,                     -- HTTP status, or the command's exit code
    outcome      text NOT NULL CHECK (outcome IN ('ok', 'refused', 'denied', 'not_found', 'error')),
    reason       text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_project ON audit (project_id, id DESC);
CREATE INDEX audit_user ON audit (user_name, id DESC);
