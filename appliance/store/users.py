"""Users, their passwords and their tokens."""

from __future__ import annotations

import hashlib
import re
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.errors import NotFound, UserError

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "appl_"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn, name: str, password: str, is_admin: bool = False) -> dict:
    if not USER_NAME.match(name):
        raise UserError(f"invalid user name {name!r}: lower-case letters, digits, . _ - "
                        "(at most 64, starting with a letter or digit)")
    if len(password) < 8:
        raise UserError("a password needs at least 8 characters")
    if conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
        raise UserError(f"user {name!r} already exists")
    return conn.execute(
        "INSERT INTO users (name, password_hash, is_admin) VALUES (%s, %s, %s) RETURNING *",
        (name, generate_password_hash(password), is_admin)).fetchone()


def set_password(conn, name: str, password: str) -> None:
    """A new password; every session of the user ends with the old one."""
    if len(password) < 8:
        raise UserError("a password needs at least 8 characters")
    cur = conn.execute("""UPDATE users SET password_hash = %s,
                              session_generation = session_generation + 1
                          WHERE name = %s""", (generate_password_hash(password), name))
    if cur.rowcount != 1:
        raise NotFound(f"no user {name!r}")


def end_sessions(conn, user_id: int) -> None:
    """Every session cookie issued to the user so far stops working (signing out)."""
    conn.execute("UPDATE users SET session_generation = session_generation + 1 WHERE id = %s",
                 (user_id,))


def session_user(conn, user_id, generation) -> dict | None:
    """The user a session cookie names, if the cookie is still current: None when the
    account is gone or signed out, or changed its password, since the cookie was made."""
    if not isinstance(user_id, int) or not isinstance(generation, int):
        return None
    user = get_user(conn, user_id)
    if user is None or user["session_generation"] != generation:
        return None
    return user


def get_user(conn, user_id: int) -> dict | None:
    return conn.execute("SELECT * FROM users WHERE id = %s", (user_id,)).fetchone()


def user_by_name(conn, name: str) -> dict:
    row = conn.execute("SELECT * FROM users WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return row


def list_users(conn) -> list[dict]:
    return conn.execute("SELECT id, name, is_admin, created_at FROM users ORDER BY name").fetchall()


def authenticate(conn, name: str, password: str) -> dict | None:
    """The user if the password is right, else None (same answer for an unknown name)."""
    row = conn.execute("SELECT * FROM users WHERE name = %s", (name,)).fetchone()
    if row is None:
        # Spend the same time as a real check so names cannot be probed by timing.
        check_password_hash(generate_password_hash("x"), password)
        return None
    return row if check_password_hash(row["password_hash"], password) else None


def create_token(conn, user_name: str, label: str = "") -> str:
    """A new token for the user; the clear text is returned once and never stored."""
    user = user_by_name(conn, user_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    conn.execute("INSERT INTO tokens (user_id, label, token_hash) VALUES (%s, %s, %s)",
                 (user["id"], label, _token_hash(token)))
    return token


def user_by_token(conn, name: str, token: str) -> dict | None:
    """The user owning this token if the name matches, else None."""
    row = conn.execute(
        """UPDATE tokens SET last_used_at = now() FROM users
           WHERE tokens.token_hash = %s AND users.id = tokens.user_id AND users.name = %s
           RETURNING users.*""", (_token_hash(token), name)).fetchone()
    return row


def can_access(conn, user: dict, project: dict) -> bool:
    if user["is_admin"]:
        return True
    return conn.execute("SELECT 1 FROM project_members WHERE project_id = %s AND user_id = %s",
                        (project["id"], user["id"])).fetchone() is not None


def add_member(conn, project_id: int, user_id: int, role: str = "developer") -> None:
    conn.execute("""INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, %s)
                    ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role""",
                 (project_id, user_id, role))
