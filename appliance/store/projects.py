"""Projects and their branches."""

from __future__ import annotations

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
    """Projects visible to the user (all of them for an admin or with no user)."""
    if user is None or user["is_admin"]:
        return conn.execute("SELECT * FROM projects ORDER BY name").fetchall()
    return conn.execute(
        """SELECT p.* FROM projects p JOIN project_members m ON m.project_id = p.id
           WHERE m.user_id = %s ORDER BY p.name""", (user["id"],)).fetchall()


def ensure_branch(conn, project: dict, name: str) -> tuple[dict, bool]:
    """The branch row, created on first push; returns (branch, created)."""
    row = conn.execute("SELECT * FROM branches WHERE project_id = %s AND name = %s",
                       (project["id"], name)).fetchone()
    if row:
        return row, False
    stage = "development"
    if name == project["production_branch"] and not conn.execute(
            "SELECT 1 FROM branches WHERE project_id = %s AND stage = 'production'",
            (project["id"],)).fetchone():
        stage = "production"
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
