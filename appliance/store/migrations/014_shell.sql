-- The build shell (appliance.shell): one-time tickets that let a signed-in page open a
-- terminal on a build, the terminal sessions themselves, and odoo-update on production.

-- A ticket: random, kept only as its sha256, valid seconds, used once, for one user and
-- one build.
CREATE TABLE shell_tickets (
    hash       text PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES users ON DELETE CASCADE,
    build_id   integer NOT NULL REFERENCES builds ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX shell_tickets_expiry ON shell_tickets (expires_at);

-- A terminal on a build (from the browser or over SSH): who, when, how long, its line in
-- the branch's history, and whether it was recorded (production: an asciicast). The
-- session's control token (kept as its sha256) lets odoo-update and odoo-restart in the
-- terminal act as its user while it is open; its marker (in its processes' environment)
-- finds them again to end them.
CREATE TABLE shell_sessions (
    id           bigserial PRIMARY KEY,
    build_id     integer NOT NULL REFERENCES builds ON DELETE CASCADE,
    user_id      integer REFERENCES users ON DELETE SET NULL,
    channel      text NOT NULL CHECK (channel IN ('browser', 'ssh')),
    control_hash text NOT NULL UNIQUE,
    event_id     bigint REFERENCES events ON DELETE SET NULL,
    recorded     boolean NOT NULL DEFAULT false,
    marker       text NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);
CREATE INDEX shell_sessions_open ON shell_sessions (build_id) WHERE ended_at IS NULL;

-- odoo-update on production queues a production build of the serving revision whose
-- deploy also updates these modules (with the pipeline's snapshot and rollback).
ALTER TABLE builds ADD COLUMN update_modules text[];

-- The triggers a build may have grow with features that land in other migrations: this
-- one adds its own to whatever list is in force.
DO $$
DECLARE
    triggers text[];
BEGIN
    SELECT array_agg(DISTINCT quoted[1]) INTO triggers
      FROM pg_constraint c,
           regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS quoted
     WHERE c.conrelid = 'builds'::regclass AND c.conname = 'builds_trigger_check';
    ALTER TABLE builds DROP CONSTRAINT builds_trigger_check;
    EXECUTE format('ALTER TABLE builds ADD CONSTRAINT builds_trigger_check CHECK (trigger = ANY (%L::text[]))',
                   ARRAY(SELECT DISTINCT unnest(coalesce(triggers, '{}') || ARRAY['shell'])
                         ORDER BY 1));
END
$$;
