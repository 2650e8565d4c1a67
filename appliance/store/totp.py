"""Time-based one-time codes (TOTP, RFC 6238) as a second sign-in step, per user.

Setting up: `begin` makes a secret (pending), the user adds it to an authenticator app
(the otpauth URI, or the secret typed by hand), and `confirm` with a code from the app
turns it on. From then on `verify` checks a code at each sign-in. The secret is shown
during set-up only, never after, and is never logged.

A code is accepted for its 30-second step and one step either side (clocks drift, people
type slowly), and only if its step is later than the last one accepted: a code cannot
be used twice, nor an older one after a newer.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re

import pyotp

from appliance.errors import UserError

# Steps either side of now whose codes are accepted.
STEP_WINDOW = 1
CODE = re.compile(r"^[0-9]{6}$")


def status(conn, user_id: int) -> str:
    """'on', 'pending' (a secret made, not confirmed yet) or 'off'."""
    row = conn.execute("SELECT enabled_at FROM user_totp WHERE user_id = %s",
                       (user_id,)).fetchone()
    if row is None:
        return "off"
    return "on" if row["enabled_at"] else "pending"


def is_enabled(conn, user_id: int) -> bool:
    return status(conn, user_id) == "on"


def begin(conn, user_id: int) -> str:
    """A new pending secret for the user (replacing a pending one); refused when the
    second step is already on."""
    if is_enabled(conn, user_id):
        raise UserError("Two-factor sign-in is already on: turn it off first to set up "
                        "another device.")
    secret = pyotp.random_base32()
    conn.execute("""INSERT INTO user_totp (user_id, secret) VALUES (%s, %s)
                    ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret,
                        created_at = now(), last_step = 0""", (user_id, secret))
    return secret


def pending_secret(conn, user_id: int) -> str | None:
    """The secret being set up, to show on the set-up page; None once it is on."""
    row = conn.execute("SELECT secret FROM user_totp WHERE user_id = %s AND enabled_at IS NULL",
                       (user_id,)).fetchone()
    return row["secret"] if row else None


def provisioning_uri(secret: str, user_name: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read (from a QR code or a link)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user_name, issuer_name=issuer)


def matching_step(secret: str, code: str, now: dt.datetime | None = None) -> int | None:
    """The time step whose code `code` is, within STEP_WINDOW of now; None if none."""
    code = "".join(code.split())
    if not CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int((now or dt.datetime.now(dt.timezone.utc)).timestamp()) // totp.interval
    for step in range(current - STEP_WINDOW, current + STEP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _accept(conn, user_id: int, code: str, enabled: bool) -> bool:
    row = conn.execute(
        f"""SELECT secret, last_step FROM user_totp WHERE user_id = %s
            AND enabled_at IS {'NOT ' if enabled else ''}NULL FOR UPDATE""",
        (user_id,)).fetchone()
    if row is None:
        return False
    step = matching_step(row["secret"], code)
    if step is None or step <= row["last_step"]:
        return False
    conn.execute("""UPDATE user_totp SET last_step = %s,
                        enabled_at = coalesce(enabled_at, now()) WHERE user_id = %s""",
                 (step, user_id))
    return True


def confirm(conn, user_id: int, code: str) -> bool:
    """Turn the pending secret on if `code` is its current code."""
    return _accept(conn, user_id, code, enabled=False)


def verify(conn, user_id: int, code: str) -> bool:
    """Whether `code` is a current code of the user's secret, not used before."""
    return _accept(conn, user_id, code, enabled=True)


def disable(conn, user_id: int) -> None:
    conn.execute("DELETE FROM user_totp WHERE user_id = %s", (user_id,))
