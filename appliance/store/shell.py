"""The build shell's state: one-time tickets and terminal sessions (with their line in
the branch's history)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from psycopg.types.json import Jsonb

# A ticket lives this long: the page asks for one just before it opens the WebSocket.
TICKET_SECONDS = 30
# Used and expired tickets are deleted after this long (kept a little for the logs).
TICKET_KEEP = dt.timedelta(hours=1)
EVENT_KIND = "shell"
CHANNELS = ("browser", "ssh")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- tickets ----------------------------------------------------------------------------

def create_ticket(conn, user_id: int, build_id: int, seconds: int = TICKET_SECONDS) -> str:
    """A new ticket for this user and build; only its digest is kept."""
    ticket = secrets.token_urlsafe(32)
    conn.execute("""INSERT INTO shell_tickets (hash, user_id, build_id, expires_at)
                    VALUES (%s, %s, %s, now() + make_interval(secs => %s))""",
                 (digest(ticket), user_id, build_id, seconds))
    return ticket


def use_ticket(conn, ticket: str) -> dict | None:
    """{user_id, build_id} of a ticket that exists, has not expired and was not used,
    which is used up now; None otherwise (whatever the reason: the caller says only
    "refused")."""
    if not ticket or len(ticket) > 200:
        return None
    return conn.execute(
        """UPDATE shell_tickets SET used_at = now()
           WHERE hash = %s AND used_at IS NULL AND expires_at > now()
           RETURNING user_id, build_id""", (digest(ticket),)).fetchone()


def prune_tickets(conn) -> int:
    return conn.execute("DELETE FROM shell_tickets WHERE expires_at < now() - %s",
                        (TICKET_KEEP,)).rowcount


# -- sessions ---------------------------------------------------------------------------

def start_session(conn, build: dict, user: dict | None, channel: str, control_token: str,
                  recorded: bool, marker: str = "") -> dict:
    """A terminal opened on the build: its row, and its line in the branch's history."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    session = conn.execute(
        """INSERT INTO shell_sessions (build_id, user_id, channel, control_hash, recorded,
                                      marker)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
        (build["id"], user["id"] if user else None, channel, digest(control_token),
         recorded, marker)).fetchone()
    event = conn.execute(
        """INSERT INTO events (project_id, branch_id, build_id, user_id, kind, message, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (build["project_id"], build["branch_id"], build["id"], session["user_id"],
         EVENT_KIND, _message(build["id"], channel, None), Jsonb(_data(session, None)))
    ).fetchone()
    conn.execute("UPDATE shell_sessions SET event_id = %s WHERE id = %s",
                 (event["id"], session["id"]))
    return {**session, "event_id": event["id"]}


def end_session(conn, session_id: int) -> dict | None:
    """The session is over: its end and duration, in its row and its history line.
    Ending it twice changes nothing (None the second time)."""
    session = conn.execute(
        """UPDATE shell_sessions SET ended_at = now()
           WHERE id = %s AND ended_at IS NULL RETURNING *""", (session_id,)).fetchone()
    if session is None:
        return None
    seconds = (session["ended_at"] - session["started_at"]).total_seconds()
    conn.execute("UPDATE events SET message = %s, data = %s WHERE id = %s",
                 (_message(session["build_id"], session["channel"], seconds),
                  Jsonb(_data(session, seconds)), session["event_id"]))
    return session


def _message(build_id: int, channel: str, seconds: float | None) -> str:
    where = "from the browser" if channel == "browser" else "over SSH"
    state = "open" if seconds is None else f"{_duration(seconds)}"
    return f"Shell on build #{build_id} {where}: {state}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _data(session: dict, seconds: float | None) -> dict:
    return {"session": session["id"], "build": session["build_id"],
            "channel": session["channel"], "started": session["started_at"].isoformat(),
            "seconds": None if seconds is None else round(seconds, 1),
            "cast": bool(session["recorded"])}


def get_session(conn, session_id: int) -> dict | None:
    return conn.execute("SELECT * FROM shell_sessions WHERE id = %s",
                        (session_id,)).fetchone()


def session_by_control(conn, build_id: int, control_token: str) -> dict | None:
    """The open session of this build whose control token this is, with its user."""
    if not control_token or len(control_token) > 200:
        return None
    return conn.execute(
        """SELECT s.*, u.name AS user_name FROM shell_sessions s
           LEFT JOIN users u ON u.id = s.user_id
           WHERE s.control_hash = %s AND s.build_id = %s AND s.ended_at IS NULL""",
        (digest(control_token), build_id)).fetchone()


def open_sessions(conn, channel: str | None = None) -> list[dict]:
    return conn.execute(
        """SELECT * FROM shell_sessions WHERE ended_at IS NULL
           AND (%s::text IS NULL OR channel = %s) ORDER BY id""", (channel, channel)).fetchall()


def recordings_before(conn, cutoff: dt.datetime) -> list[int]:
    """Recorded sessions that ended before `cutoff` (their casts may go)."""
    return [row["id"] for row in conn.execute(
        """SELECT id FROM shell_sessions WHERE recorded AND ended_at < %s ORDER BY id""",
        (cutoff,))]


def forget_recording(conn, session_id: int) -> None:
    conn.execute("UPDATE shell_sessions SET recorded = false WHERE id = %s", (session_id,))
    conn.execute("""UPDATE events SET data = data || '{"cast": false}'::jsonb
                    WHERE id = (SELECT event_id FROM shell_sessions WHERE id = %s)""",
                 (session_id,))
