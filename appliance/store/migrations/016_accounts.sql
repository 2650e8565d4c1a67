-- Accounts: tokens with scopes and an end, users that can be disabled, links that set a
-- password, and a second sign-in step with a time-based code (TOTP).

-- What a token may do: git_read (fetch), git_write (push), api (/api/... with Bearer).
-- Tokens made before keep every scope and never expire.
ALTER TABLE tokens
    ADD COLUMN scopes     text[] NOT NULL DEFAULT '{git_read,git_write,api}'
                          CHECK (scopes <@ '{git_read,git_write,api}' AND cardinality(scopes) > 0),
    ADD COLUMN expires_at timestamptz,   -- NULL: never
    ADD COLUMN revoked_at timestamptz;
ALTER TABLE tokens ALTER COLUMN scopes DROP DEFAULT;
CREATE INDEX tokens_user ON tokens (user_id, id DESC);

-- A disabled user cannot sign in; their sessions, access cookies and tokens stop at once.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- One-time links that set a password (a reset, or an invitation to a new account). Only a
-- hash of the link's token is kept; a new link voids the user's earlier unused ones.
CREATE TABLE password_links (
    id         serial PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES users ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_links_user ON password_links (user_id);

-- A user's TOTP secret: pending until a code confirms it (enabled_at), then asked at every
-- sign-in. last_step is the time step of the last code accepted: a code of that step or
-- an earlier one is refused, so a code seen over a shoulder cannot be used again.
-- Kept apart from users, whose rows the web loads on every request.
CREATE TABLE user_totp (
    user_id    integer PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    secret     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    enabled_at timestamptz,
    last_step  bigint NOT NULL DEFAULT 0
);
