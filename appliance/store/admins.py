"""Who is an appliance admin. The appliance always keeps one enabled admin: the last
one is never demoted (store.users.set_disabled never disables them either)."""

from __future__ import annotations

from appliance.errors import UserError
from appliance.store import users as users_store


def set_admin(conn, name: str, is_admin: bool) -> dict:
    """Make the user an appliance admin, or no longer one. Refused (UserError, nothing
    changed) for the last enabled admin; the admins' rows are locked while counting, so
    two admins demoting each other at once cannot both succeed."""
    user = users_store.user_by_name(conn, name)
    if not is_admin and user["is_admin"]:
        admins = conn.execute("""SELECT id FROM users WHERE is_admin AND disabled_at IS NULL
                                 ORDER BY id FOR UPDATE""").fetchall()
        if all(row["id"] == user["id"] for row in admins):
            raise UserError(f"{name} is the only enabled appliance admin: make another "
                            "admin first")
    return conn.execute("UPDATE users SET is_admin = %s WHERE id = %s RETURNING *",
                        (is_admin, user["id"])).fetchone()


def user_overview(conn) -> list[dict]:
    """Every user with what the admin page shows: admin, disabled, invited (no password
    set yet), their projects and roles."""
    return conn.execute(
        """SELECT u.id, u.name, u.is_admin, u.created_at, u.disabled_at,
                  u.password_hash = %s AS invited,
                  coalesce(array_agg(p.name || ' (' || m.role || ')' ORDER BY p.name)
                           FILTER (WHERE p.id IS NOT NULL), '{}') AS projects
           FROM users u
           LEFT JOIN project_members m ON m.user_id = u.id
           LEFT JOIN projects p ON p.id = m.project_id
           GROUP BY u.id ORDER BY u.name""", (users_store.NO_PASSWORD,)).fetchall()
