"""Uploads: files arriving in chunks to be imported, one row each (the bytes are on disk,
see jobs/uploads.py), and the backup tasks of branches ("Back up now").

An upload belongs to the person and the project that started it: every read names both,
so another person's upload is not found (a 404), never refused (which would tell it
exists). `received` only moves forward, by the length of a chunk that arrived at exactly
that offset, under the row's lock.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from appliance.errors import NotFound, UserError
from appliance.store import builds as builds_store

STATES = ("receiving", "complete", "imported")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# A file's name as kept and shown: no path, at most this long.
NAME_MAX = 200


def new_id() -> str:
    return secrets.token_urlsafe(24)


def create(conn, *, project: dict, user: dict | None, name: str, size: int,
           sha256: str | None = None, upload_id: str | None = None) -> dict:
    """A new upload expecting `size` bytes."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()[:NAME_MAX]
    if not name:
        raise UserError("the file has no name")
    if size <= 0:
        raise UserError("the file is empty")
    if sha256 is not None:
        sha256 = sha256.lower()
        if not SHA256_PATTERN.match(sha256):
            raise UserError("sha256 must be 64 hexadecimal digits")
    return conn.execute(
        """INSERT INTO uploads (id, user_id, project_id, name, size, sha256)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
        (upload_id or new_id(), user["id"] if user else None, project["id"], name, size,
         sha256)).fetchone()


def get(conn, upload_id: str, *, project: dict, user: dict | None,
        lock: bool = False) -> dict:
    """The upload if it is this user's in this project; NotFound otherwise. With `lock`,
    the row stays locked to the end of the transaction (chunks are taken one at a time)."""
    if not ID_PATTERN.match(upload_id or ""):
        raise NotFound("no such upload")
    row = conn.execute(
        "SELECT * FROM uploads WHERE id = %s AND project_id = %s "
        "AND user_id IS NOT DISTINCT FROM %s" + (" FOR UPDATE" if lock else ""),
        (upload_id, project["id"], user["id"] if user else None)).fetchone()
    if row is None:
        raise NotFound("no such upload")
    return row


def received(conn, upload_id: str, received: int) -> dict:
    """Record how many bytes have arrived; complete when all have."""
    return conn.execute(
        """UPDATE uploads SET received = %s, updated_at = now(),
                  state = CASE WHEN %s = size THEN 'complete' ELSE state END
           WHERE id = %s RETURNING *""", (received, received, upload_id)).fetchone()


def bytes_to_come(conn) -> int:
    """The bytes the unfinished uploads of every project have announced and not sent."""
    return conn.execute("SELECT coalesce(sum(size - received), 0)::bigint AS n FROM uploads "
                        "WHERE state = 'receiving'").fetchone()["n"]


def imported(conn, upload_id: str, build_id: int) -> None:
    conn.execute("UPDATE uploads SET state = 'imported', build_id = %s, updated_at = now() "
                 "WHERE id = %s", (build_id, upload_id))


def idle_since(conn, moment: datetime) -> list[dict]:
    """Uploads nobody touched since `moment`, oldest first."""
    return conn.execute("SELECT * FROM uploads WHERE updated_at < %s ORDER BY updated_at",
                        (moment,)).fetchall()


def known_ids(conn) -> set[str]:
    return {row["id"] for row in conn.execute("SELECT id FROM uploads")}


def delete(conn, upload_id: str) -> None:
    conn.execute("DELETE FROM uploads WHERE id = %s", (upload_id,))


def to_json(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "size": row["size"],
            "received": row["received"], "state": row["state"], "sha256": row["sha256"],
            "build_id": row["build_id"]}


# -- backup tasks of branches --------------------------------------------------------

def request_backup(conn, branch: dict, user: dict | None) -> dict:
    """Queue "back up this branch now" for the task pool (jobs/queue.py)."""
    row = conn.execute(
        """INSERT INTO tasks (kind, project_id, branch_id, user_id)
           VALUES ('backup', %s, %s, %s) RETURNING *""",
        (branch["project_id"], branch["id"], user["id"] if user else None)).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (builds_store.QUEUE_CHANNEL, f"task:{row['id']}"))
    return row


def pending_backups(conn, branch_id: int) -> list[dict]:
    """The branch's backup tasks queued or running, oldest first."""
    return conn.execute(
        """SELECT * FROM tasks WHERE kind = 'backup' AND branch_id = %s
                  AND state IN ('queued', 'running') ORDER BY id""", (branch_id,)).fetchall()


def failed_backup_tasks(conn, branch_id: int, limit: int = 3) -> list[dict]:
    """The branch's latest backup tasks that failed before a backup row said why (a
    refusal: the branch has no build to back up)."""
    return conn.execute(
        """SELECT * FROM tasks WHERE kind = 'backup' AND branch_id = %s AND state = 'failed'
                  AND created_at > now() - interval '1 day'
           ORDER BY id DESC LIMIT %s""", (branch_id, limit)).fetchall()
