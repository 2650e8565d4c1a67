-- Custom domains of production (and staging) branches, served by the proxy beside the
-- appliance's own names. One of a branch's domains is its primary: the others redirect
-- to it.
CREATE TABLE domains (
    id          serial PRIMARY KEY,
    project_id  integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    branch_id   integer NOT NULL REFERENCES branches ON DELETE CASCADE,
    name        text NOT NULL UNIQUE,
    is_primary  boolean NOT NULL DEFAULT false,
    created_by  integer REFERENCES users ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX domains_one_primary ON domains (branch_id) WHERE is_primary;
