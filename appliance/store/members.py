"""A project's collaborators: who is a member, with which role."""

from __future__ import annotations

from appliance.errors import NotFound, UserError
from appliance.store import users as store_users

ROLES = ("admin", "developer", "tester")


def list_members(conn, project: dict) -> list[dict]:
    return conn.execute(
        """SELECT u.id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id
           WHERE m.project_id = %s ORDER BY u.name""", (project["id"],)).fetchall()


def set_role(conn, project: dict, user_name: str, role: str) -> tuple[dict, str | None]:
    """Add the user to the project with `role`, or change their role; returns the user
    and the role they had (None when they were not a member)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    user = conn.execute("SELECT id, name FROM users WHERE name = %s",
                        (user_name.strip(),)).fetchone()
    if user is None:
        raise UserError(f"no user {user_name.strip()!r}: an appliance administrator invites "
                        "people first")
    old = conn.execute("""SELECT role FROM project_members WHERE project_id = %s AND user_id = %s
                          FOR UPDATE""", (project["id"], user["id"])).fetchone()
    if old and old["role"] == "admin" and role != "admin":
        _keep_an_admin(conn, project, user)
    store_users.add_member(conn, project["id"], user["id"], role)
    return user, old["role"] if old else None


def remove(conn, project: dict, user_name: str) -> dict:
    row = conn.execute(
        """SELECT u.id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id
           WHERE m.project_id = %s AND u.name = %s FOR UPDATE""",
        (project["id"], user_name)).fetchone()
    if row is None:
        raise NotFound(f"{user_name!r} is not a collaborator of {project['name']}")
    if row["role"] == "admin":
        _keep_an_admin(conn, project, row)
    conn.execute("DELETE FROM project_members WHERE project_id = %s AND user_id = %s",
                 (project["id"], row["id"]))
    return row


def _keep_an_admin(conn, project: dict, leaving: dict) -> None:
    """A project that has admins keeps at least one: its settings stay someone's."""
    others = conn.execute(
        """SELECT count(*) AS n FROM project_members
           WHERE project_id = %s AND role = 'admin' AND user_id <> %s""",
        (project["id"], leaving["id"])).fetchone()["n"]
    if others == 0:
        raise UserError(f"{leaving['name']} is the last admin of {project['name']}: make "
                        "someone else admin first")
