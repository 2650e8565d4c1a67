-- Development builds of a project behind the proxy are reachable by its members only,
-- unless the project opens them to anyone with the address (never staging or production
-- data: those are Odoo's own login's to guard).
ALTER TABLE projects ADD COLUMN public_access boolean NOT NULL DEFAULT false;
