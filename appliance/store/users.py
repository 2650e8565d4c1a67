"""Users, their passwords, their tokens, and the links that set a password.

A user may be disabled: they cannot sign in, and their sessions, access cookies (both
checked through session_user) and tokens (user_by_token) stop working at once. Tokens
carry scopes (git_read, git_write, api) and may expire or be revoked; only their hash
is kept, as for the one-time links that set a password (a reset, or an invitation).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from appliance import passwords
from appliance.errors import NotFound, PermissionDenied, UserError

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "appl_"
# What a token may be used for, in the words of the account page.
SCOPES = {
    "git_read": "git read (clone, fetch)",
    "git_write": "git write (push)",
    "api": "API (/api/..., as Authorization: Bearer)",
}
ALL_SCOPES = tuple(SCOPES)
MAX_TOKEN_LABEL = 100
# A number of days of expiry past this is a typo (ten years): use a date, or never.
MAX_TOKEN_DAYS = 3650
# A link that sets a password works this long, once (an invitation may wait a weekend).
PASSWORD_LINK_LIFETIME = dt.timedelta(days=3)
# The hash of an account that has no password yet (invited): no password matches it.
NO_PASSWORD = "!"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Users and passwords

def create_user(conn, name: str, password: str | None, is_admin: bool = False,
                min_length: int = passwords.DEFAULT_MIN_LENGTH) -> dict:
    """A new user. With password None, the account has none until a link from
    password_link sets one (an invitation)."""
    if not USER_NAME.match(name):
        raise UserError(f"invalid user name {name!r}: lower-case letters, digits, . _ - "
                        "(at most 64, starting with a letter or digit)")
    if password is not None:
        passwords.check(password, name, min_length)
    if conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
        raise UserError(f"user {name!r} already exists")
    hashed = NO_PASSWORD if password is None else generate_password_hash(password)
    return conn.execute(
        "INSERT INTO users (name, password_hash, is_admin) VALUES (%s, %s, %s) RETURNING *",
        (name, hashed, is_admin)).fetchone()


def set_password(conn, name: str, password: str,
                 min_length: int = passwords.DEFAULT_MIN_LENGTH) -> int:
    """A new password (checked against the rules of appliance.passwords); every session
    of the user ends with the old one. Returns the new session generation, which a
    session that should go on (the one that changed it) takes."""
    passwords.check(password, name, min_length)
    row = conn.execute("""UPDATE users SET password_hash = %s,
                              session_generation = session_generation + 1
                          WHERE name = %s RETURNING session_generation""",
                       (generate_password_hash(password), name)).fetchone()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return row["session_generation"]


def password_matches(user: dict, password: str) -> bool:
    return check_password_hash(user["password_hash"], password)


def end_sessions(conn, user_id: int) -> None:
    """Every session cookie issued to the user so far stops working (signing out)."""
    conn.execute("UPDATE users SET session_generation = session_generation + 1 WHERE id = %s",
                 (user_id,))


def is_active(user: dict | None) -> bool:
    return user is not None and user.get("disabled_at") is None


def session_user(conn, user_id, generation) -> dict | None:
    """The user a session cookie names, if the cookie is still current: None when the
    account is gone, disabled or signed out, or changed its password, since the cookie
    was made."""
    if not isinstance(user_id, int) or not isinstance(generation, int):
        return None
    user = get_user(conn, user_id)
    if not is_active(user) or user["session_generation"] != generation:
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
    return conn.execute("""SELECT id, name, is_admin, created_at, disabled_at,
                                  password_hash = %s AS invited
                           FROM users ORDER BY name""", (NO_PASSWORD,)).fetchall()


def authenticate(conn, name: str, password: str) -> dict | None:
    """The user if the password is right, else None (same answer for an unknown name).
    A disabled user is returned too: the caller tells them so."""
    row = conn.execute("SELECT * FROM users WHERE name = %s", (name,)).fetchone()
    if row is None:
        # Spend the same time as a real check so names cannot be probed by timing.
        check_password_hash(generate_password_hash("x"), password)
        return None
    return row if password_matches(row, password) else None


def set_disabled(conn, name: str, disabled: bool) -> dict:
    """Disable a user (they are locked out at once: sessions, access cookies, tokens,
    unused password links) or enable them again (they sign in anew). The last enabled
    appliance admin cannot be disabled."""
    user = user_by_name(conn, name)
    if not disabled:
        return conn.execute("UPDATE users SET disabled_at = NULL WHERE id = %s RETURNING *",
                            (user["id"],)).fetchone()
    if user["is_admin"] and user["disabled_at"] is None:
        others = conn.execute("""SELECT count(*) AS n FROM users WHERE is_admin
                                 AND disabled_at IS NULL AND id <> %s""",
                              (user["id"],)).fetchone()["n"]
        if others == 0:
            raise UserError(f"{name} is the only enabled appliance admin: make another "
                            "admin first")
    conn.execute("UPDATE password_links SET used_at = now() WHERE user_id = %s "
                 "AND used_at IS NULL", (user["id"],))
    return conn.execute("""UPDATE users SET disabled_at = coalesce(disabled_at, now()),
                               session_generation = session_generation + 1
                           WHERE id = %s RETURNING *""", (user["id"],)).fetchone()


# Links that set a password

def reset_password(conn, name: str, lifetime: dt.timedelta = PASSWORD_LINK_LIFETIME) -> str:
    """A one-time link token that lets the user set a new password (for a reset, or to
    invite a user made without one); the clear token is returned once and only its hash
    is kept. The user's earlier unused links stop working. The current password keeps
    working until the link is used."""
    user = user_by_name(conn, name)
    conn.execute("UPDATE password_links SET used_at = now() WHERE user_id = %s "
                 "AND used_at IS NULL", (user["id"],))
    token = secrets.token_urlsafe(32)
    conn.execute("""INSERT INTO password_links (user_id, token_hash, expires_at)
                    VALUES (%s, %s, now() + %s)""", (user["id"], _hash(token), lifetime))
    return token


def password_link_user(conn, token: str, lock: bool = False) -> dict | None:
    """The active user a link token is for, while it is unused and unexpired; else None."""
    return conn.execute(
        f"""SELECT u.*, l.id AS link_id FROM password_links l JOIN users u ON u.id = l.user_id
            WHERE l.token_hash = %s AND l.used_at IS NULL AND l.expires_at > now()
              AND u.disabled_at IS NULL {'FOR UPDATE OF l' if lock else ''}""",
        (_hash(token),)).fetchone()


def use_password_link(conn, token: str, password: str,
                      min_length: int = passwords.DEFAULT_MIN_LENGTH) -> dict:
    """Set the password through a link, which then stops working; every session of the
    user ends. NotFound for a link that is unknown, used, expired or of a disabled user;
    UserError (the link still unused) for a password the rules refuse."""
    user = password_link_user(conn, token, lock=True)
    if user is None:
        raise NotFound("This link is unknown, expired or already used: ask an "
                       "administrator for a new one.")
    set_password(conn, user["name"], password, min_length)
    conn.execute("UPDATE password_links SET used_at = now() WHERE id = %s", (user["link_id"],))
    return get_user(conn, user["id"])


# Personal access tokens

def _check_scopes(scopes) -> list[str]:
    chosen = sorted(set(scopes), key=ALL_SCOPES.index) if set(scopes) <= set(SCOPES) else None
    if not chosen:
        raise UserError(f"a token needs at least one scope among {', '.join(SCOPES)}")
    return chosen


def token_expiry(text: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When a token asked to expire `text` stops working: "never" (or nothing) is None,
    "30" or "30d" is 30 days from now, "2030-01-31" is the end of that day (UTC)."""
    text = text.strip().lower()
    now = now or dt.datetime.now(dt.timezone.utc)
    if text in ("", "never"):
        return None
    days = text[:-1] if text.endswith("d") else text
    if days.isdigit():
        if not 0 < int(days) <= MAX_TOKEN_DAYS:
            raise UserError(f"a token lasts from 1 to {MAX_TOKEN_DAYS} days, or never")
        return now + dt.timedelta(days=int(days))
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"expiry {text!r}: a date (YYYY-MM-DD), a number of days, "
                        "or never") from None
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    if end <= now:
        raise UserError(f"expiry {text}: that day is over")
    return end


def create_token(conn, user_name: str, label: str = "", scopes=ALL_SCOPES,
                 expires_at: dt.datetime | None = None) -> str:
    """A new token for the user (expires_at None: it never expires); the clear text is
    returned once and never stored."""
    user = user_by_name(conn, user_name)
    label = label.strip()
    if len(label) > MAX_TOKEN_LABEL:
        raise UserError(f"a token's name has at most {MAX_TOKEN_LABEL} characters")
    chosen = _check_scopes(scopes)
    if expires_at is not None and expires_at <= dt.datetime.now(dt.timezone.utc):
        raise UserError("a token's expiry must be in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    conn.execute("""INSERT INTO tokens (user_id, label, token_hash, scopes, expires_at)
                    VALUES (%s, %s, %s, %s, %s)""",
                 (user["id"], label, _hash(token), chosen, expires_at))
    return token


def list_tokens(conn, user_id: int) -> list[dict]:
    """The user's tokens, newest first, with whether each still works (never the hash)."""
    return conn.execute(
        """SELECT id, label, scopes, created_at, last_used_at, expires_at, revoked_at,
                  revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS live
           FROM tokens WHERE user_id = %s ORDER BY id DESC""", (user_id,)).fetchall()


def revoke_token(conn, user_id: int, token_id: int) -> dict:
    """Revoke one of the user's own tokens (NotFound for anyone else's)."""
    row = conn.execute("""UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
                          WHERE id = %s AND user_id = %s RETURNING id, label""",
                       (token_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"no token #{token_id}")
    return row


def user_by_token(conn, name: str | None, token: str, scope: str) -> dict | None:
    """The user owning this token when it still works (not revoked, not expired, its
    user not disabled) and, unless `name` is None, the user has that name; its last use
    is then now. None otherwise, the same for every reason. A working token without
    `scope` raises PermissionDenied, and counts as no use."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    row = conn.execute(
        """SELECT t.id AS token_id, t.scopes FROM tokens t JOIN users u ON u.id = t.user_id
           WHERE t.token_hash = %s AND (%s::text IS NULL OR u.name = %s)
             AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
             AND u.disabled_at IS NULL""", (_hash(token), name, name)).fetchone()
    if row is None:
        return None
    if scope not in row["scopes"]:
        raise PermissionDenied(f"this token may not be used for {SCOPES[scope]}: it has "
                               f"{', '.join(row['scopes'])}")
    return conn.execute("""UPDATE tokens SET last_used_at = now() FROM users
                           WHERE tokens.id = %s AND users.id = tokens.user_id
                           RETURNING users.*""", (row["token_id"],)).fetchone()


# Projects

def can_access(conn, user: dict, project: dict) -> bool:
    if user["is_admin"]:
        return True
    return conn.execute("SELECT 1 FROM project_members WHERE project_id = %s AND user_id = %s",
                        (project["id"], user["id"])).fetchone() is not None


def add_member(conn, project_id: int, user_id: int, role: str = "developer") -> None:
    conn.execute("""INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, %s)
                    ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role""",
                 (project_id, user_id, role))
