-- Sessions that end on the server, and a brake on guessing passwords.

-- Copied into the signed session cookie at sign-in and compared on every request: signing
-- out or changing the password adds one, and every cookie issued before means nothing.
ALTER TABLE users ADD COLUMN session_generation integer NOT NULL DEFAULT 1;

-- Failed sign-ins, counted per account name (as typed) and per client address. Kept here,
-- not in memory, so that a restart forgets nothing and every request thread sees the same.
CREATE TABLE login_throttle (
    scope        text NOT NULL CHECK (scope IN ('account', 'address')),
    key          text NOT NULL,
    failures     integer NOT NULL DEFAULT 0,
    locked_until timestamptz,            -- no attempt is even checked before this moment
    forget_at    timestamptz NOT NULL,   -- after this, quiet long enough: counting restarts
    PRIMARY KEY (scope, key)
);
CREATE INDEX login_throttle_forget ON login_throttle (forget_at);
