-- Per project, the cells of the permission matrix (appliance.policy) that differ from the
-- defaults: whether a role may do an action on a stage. The admin role is never stored:
-- a project's admins may do everything on it.
CREATE TABLE project_permissions (
    project_id integer NOT NULL REFERENCES projects ON DELETE CASCADE,
    stage      text NOT NULL CHECK (stage IN ('production', 'staging', 'development')),
    action     text NOT NULL,
    role       text NOT NULL CHECK (role IN ('developer', 'tester')),
    allowed    boolean NOT NULL,
    PRIMARY KEY (project_id, stage, action, role)
);
