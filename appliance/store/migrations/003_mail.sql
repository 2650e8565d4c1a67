-- Mail: what development and staging builds send is caught here, attributed to the
-- build that sent it; production sends through its project's relay.

CREATE TABLE mails (
    id          bigserial PRIMARY KEY,
    project_id  integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    build_id    integer NOT NULL REFERENCES builds ON DELETE CASCADE,
    -- The SMTP envelope, as the sender gave it.
    mail_from   text NOT NULL DEFAULT '',
    rcpt_to     text[] NOT NULL,
    -- Read from the headers (decoded); empty when the message has none or is not MIME.
    from_header text NOT NULL DEFAULT '',
    to_header   text NOT NULL DEFAULT '',
    subject     text NOT NULL DEFAULT '',
    message_id  text NOT NULL DEFAULT '',
    sent_at     timestamptz,                    -- the Date header, when it parses
    size        integer NOT NULL,
    malformed   boolean NOT NULL DEFAULT false, -- not readable as MIME: shown raw
    received_at timestamptz NOT NULL DEFAULT now(),
    raw         bytea NOT NULL
);
-- Messages are mostly compressed already (base64 attachments) and read whole: no pglz.
ALTER TABLE mails ALTER COLUMN raw SET STORAGE EXTERNAL;
CREATE INDEX mails_build ON mails (build_id, id DESC);
CREATE INDEX mails_project ON mails (project_id, id DESC);

-- The project's outgoing relay (production's Odoo and released mails) and how long
-- caught mail is kept.
ALTER TABLE projects
    ADD COLUMN relay_host      text NOT NULL DEFAULT '',
    ADD COLUMN relay_port      integer NOT NULL DEFAULT 587 CHECK (relay_port BETWEEN 1 AND 65535),
    ADD COLUMN relay_security  text NOT NULL DEFAULT 'starttls'
                               CHECK (relay_security IN ('none', 'starttls')),
    ADD COLUMN relay_user      text NOT NULL DEFAULT '',
    ADD COLUMN relay_password  text NOT NULL DEFAULT '',
    ADD COLUMN mail_keep_days  integer NOT NULL DEFAULT 30
                               CHECK (mail_keep_days BETWEEN 1 AND 3650),
    ADD COLUMN mail_keep_count integer NOT NULL DEFAULT 1000
                               CHECK (mail_keep_count BETWEEN 1 AND 1000000);
