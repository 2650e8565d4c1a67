-- Users' SSH public keys, for git and shells over SSH. sshd asks the appliance for the key
-- a client offers by its fingerprint (AuthorizedKeysCommand), so the fingerprint is unique
-- across all users: one key names one person. Only public parts are kept.
CREATE TABLE ssh_keys (
    id           serial PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES users ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_type     text NOT NULL,
    key_body     text NOT NULL,
    fingerprint  text NOT NULL UNIQUE CHECK (fingerprint LIKE 'SHA256:%'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    UNIQUE (user_id, name)
);
