"""Projects and their branches."""

from __future__ import annotations

import ipaddress
import re
import secrets

from appliance.errors import NotFound, UserError

PROJECT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def validate_name(name: str) -> str:
    if not PROJECT_NAME.match(name or ""):
        raise UserError(f"invalid project name {name!r}: lower-case letters, digits and '-', "
                        "starting with a letter, at most 40")
    return name


def create_project(conn, name: str, odoo_version: str, role_prefix: str, *,
                   modules: str = "", demo: bool = False) -> dict:
    validate_name(name)
    if conn.execute("SELECT 1 FROM projects WHERE name = %s", (name,)).fetchone():
        raise UserError(f"project {name!r} already exists")
    role = role_prefix + name.replace("-", "_")
    return conn.execute(
        """INSERT INTO projects (name, odoo_version, db_role, db_password, modules, demo)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
        (name, odoo_version, role, secrets.token_urlsafe(24), modules, demo)).fetchone()


def get_project(conn, name: str) -> dict:
    row = conn.execute("SELECT * FROM projects WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no project {name!r}")
    return row


def project_by_id(conn, project_id: int) -> dict:
    row = conn.execute("SELECT * FROM projects WHERE id = %s", (project_id,)).fetchone()
    if row is None:
        raise NotFound(f"no project #{project_id}")
    return row


def list_projects(conn, user: dict | None = None) -> list[dict]:
    """Projects visible to the user (all of them for an admin or with no user); a member
    no longer sees an archived project in the list."""
    if user is None or user["is_admin"]:
        return conn.execute("SELECT * FROM projects ORDER BY name").fetchall()
    return conn.execute(
        """SELECT p.* FROM projects p JOIN project_members m ON m.project_id = p.id
           WHERE m.user_id = %s AND p.archived_at IS NULL ORDER BY p.name""",
        (user["id"],)).fetchall()


def stage_for(conn, project: dict, name: str) -> str:
    """The branch's stage, or the one it gets when a push creates it: production for the
    project's production branch while it has none, else development."""
    row = conn.execute("SELECT stage FROM branches WHERE project_id = %s AND name = %s",
                       (project["id"], name)).fetchone()
    if row:
        return row["stage"]
    if name == project["production_branch"] and not conn.execute(
            "SELECT 1 FROM branches WHERE project_id = %s AND stage = 'production'",
            (project["id"],)).fetchone():
        return "production"
    return "development"


def ensure_branch(conn, project: dict, name: str) -> tuple[dict, bool]:
    """The branch row, created on first push; returns (branch, created)."""
    row = conn.execute("SELECT * FROM branches WHERE project_id = %s AND name = %s",
                       (project["id"], name)).fetchone()
    if row:
        return row, False
    stage = stage_for(conn, project, name)
    row = conn.execute(
        """INSERT INTO branches (project_id, name, stage) VALUES (%s, %s, %s)
           ON CONFLICT (project_id, name) DO UPDATE SET name = EXCLUDED.name
           RETURNING *""", (project["id"], name, stage)).fetchone()
    return row, True


def get_branch(conn, project: dict, name: str) -> dict:
    row = conn.execute("SELECT * FROM branches WHERE project_id = %s AND name = %s",
                       (project["id"], name)).fetchone()
    if row is None:
        raise NotFound(f"no branch {name!r} in project {project['name']!r}")
    return row


def list_branches(conn, project: dict) -> list[dict]:
    """Production first, then by latest build, newest first (as Odoo.sh lists them)."""
    return conn.execute(
        """SELECT b.*, (SELECT max(id) FROM builds WHERE branch_id = b.id) AS latest_build
           FROM branches b WHERE b.project_id = %s
           ORDER BY b.stage = 'production' DESC, b.stage = 'staging' DESC,
                    latest_build DESC NULLS LAST, b.name""", (project["id"],)).fetchall()


STAGES = ("production", "staging", "development")
PUSH_BEHAVIOURS = ("new", "update", "nothing")


def production_branch(conn, project: dict) -> dict | None:
    return conn.execute("SELECT * FROM branches WHERE project_id = %s AND stage = 'production'",
                        (project["id"],)).fetchone()


def set_stage(conn, branch: dict, stage: str, push_behaviour: str | None = None) -> dict:
    return conn.execute(
        """UPDATE branches SET stage = %s, push_behaviour = coalesce(%s, push_behaviour)
           WHERE id = %s RETURNING *""", (stage, push_behaviour, branch["id"])).fetchone()


def set_push_behaviour(conn, branch: dict, value: str) -> None:
    if value not in PUSH_BEHAVIOURS:
        raise UserError(f"push behaviour must be one of {', '.join(PUSH_BEHAVIOURS)}")
    conn.execute("UPDATE branches SET push_behaviour = %s WHERE id = %s", (value, branch["id"]))


# --- Mail settings: the outgoing relay and how long caught mail is kept -----------------

RELAY_SECURITY = ("none", "starttls")
MAIL_FIELDS = ("relay_host", "relay_port", "relay_security", "relay_user", "relay_password",
               "mail_keep_days", "mail_keep_count")
# Upper bounds of the retention (the table's CHECK constraints say the same).
MAIL_KEEP_MOST = {"mail_keep_days": 3650, "mail_keep_count": 1_000_000}
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def member_role(conn, project: dict, user: dict) -> str | None:
    """The user's role in the project ('admin', 'developer', 'tester'), None if not a member."""
    row = conn.execute("SELECT role FROM project_members WHERE project_id = %s AND user_id = %s",
                       (project["id"], user["id"])).fetchone()
    return row["role"] if row else None


def _check_host(host: str) -> None:
    """A host name or an IP address, nothing else: no scheme, port, path or spaces."""
    if not host:
        return  # no relay
    try:
        if str(ipaddress.ip_address(host)) == host and "%" not in host:
            return
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise UserError(f"relay host {host!r} is not a host name or an IP address "
                        "(no scheme, port or spaces: e.g. smtp.example.com)")


def _check_mail_field(name: str, value) -> None:
    if name == "relay_host":
        _check_host(value)
    elif name == "relay_port":
        if not isinstance(value, int) or not 1 <= value <= 65535:
            raise UserError("relay port must be a number from 1 to 65535")
    elif name == "relay_security":
        if value not in RELAY_SECURITY:
            raise UserError(f"relay security must be one of {', '.join(RELAY_SECURITY)}")
    elif name in ("relay_user", "relay_password"):
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise UserError(f"the relay {name.removeprefix('relay_')} may not contain line "
                            "breaks")
    elif name in ("mail_keep_days", "mail_keep_count"):
        most = MAIL_KEEP_MOST[name]
        if not isinstance(value, int) or not 1 <= value <= most:
            what = "days" if name == "mail_keep_days" else "messages"
            raise UserError(f"caught mail is kept for 1 to {most:,} {what}")
    else:
        raise UserError(f"no mail setting {name!r}")


def set_public_access(conn, project: dict, public: bool) -> dict:
    """Open the project's development builds to anyone with their address, or close them
    to its members again. Returns the updated project."""
    return conn.execute("UPDATE projects SET public_access = %s WHERE id = %s RETURNING *",
                        (bool(public), project["id"])).fetchone()


def set_mail_settings(conn, project: dict, **fields) -> dict:
    """Change the given mail settings (MAIL_FIELDS; the others stay). Every value is checked
    first, so a refusal (UserError) changes nothing. Returns the updated project."""
    for name, value in fields.items():
        _check_mail_field(name, value)
    if not fields:
        return project
    assignments = ", ".join(f"{name} = %s" for name in fields)  # names checked above
    return conn.execute(f"UPDATE projects SET {assignments} WHERE id = %s RETURNING *",
                        [*fields.values(), project["id"]]).fetchone()
