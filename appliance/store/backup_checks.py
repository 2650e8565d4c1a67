"""Rows of the checks around backups: copy targets and their status, verifications of
backups (restored and compared), and checks of the repository.

A target's row never holds a secret: its password and credentials are in files
(jobs/backup_copies.py).
"""

from __future__ import annotations

import re

from psycopg.types.json import Jsonb

from appliance.errors import NotFound, UserError

TARGET_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# How much of restic's report a repository check keeps.
OUTPUT_CHARS = 4000


# -- copy targets ------------------------------------------------------------------------

def add_target(conn, name: str, location: str, options: dict | None = None) -> dict:
    if not TARGET_NAME.match(name or ""):
        raise UserError(f"invalid target name {name!r}: lower-case letters, digits and "
                        "dashes, starting with a letter (at most 40)")
    if conn.execute("SELECT 1 FROM backup_targets WHERE name = %s", (name,)).fetchone():
        raise UserError(f"a copy target named {name} exists already")
    return conn.execute("INSERT INTO backup_targets (name, location, options) "
                        "VALUES (%s, %s, %s) RETURNING *",
                        (name, location, Jsonb(options or {}))).fetchone()


def get_target(conn, name: str) -> dict:
    row = conn.execute("SELECT * FROM backup_targets WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no copy target named {name!r}")
    return row


def targets(conn) -> list[dict]:
    return conn.execute("SELECT * FROM backup_targets ORDER BY name").fetchall()


def remove_target(conn, name: str) -> dict:
    row = get_target(conn, name)
    conn.execute("DELETE FROM backup_targets WHERE id = %s", (row["id"],))
    return row


def target_copied(conn, target_id: int, backup_id: int | None) -> None:
    """A copy succeeded, up to `backup_id` (the newest backup it now holds)."""
    conn.execute("""UPDATE backup_targets SET last_attempt_at = now(), last_ok_at = now(),
                           failing_since = NULL, last_error = '',
                           last_copied_backup = coalesce(%s, last_copied_backup)
                    WHERE id = %s""", (backup_id, target_id))


def target_failed(conn, target_id: int, error: str) -> None:
    conn.execute("""UPDATE backup_targets SET last_attempt_at = now(), last_error = %s,
                           failing_since = coalesce(failing_since, now())
                    WHERE id = %s""", (error, target_id))


def failing_targets(conn) -> list[dict]:
    return conn.execute("SELECT * FROM backup_targets WHERE failing_since IS NOT NULL "
                        "ORDER BY name").fetchall()


def newest_done_backup(conn) -> int | None:
    """The id of the newest done backup still in the repository, of any project."""
    row = conn.execute("SELECT max(id) AS id FROM backups WHERE state = 'done' "
                       "AND forgotten_at IS NULL").fetchone()
    return row["id"]


# -- verifications -----------------------------------------------------------------------

def start_verification(conn, project_id: int, backup_id: int, pid: int) -> dict:
    """A running verification, by the process `pid` (so a start-up can tell it is gone)."""
    return conn.execute("INSERT INTO backup_verifications (project_id, backup_id, details) "
                        "VALUES (%s, %s, %s) RETURNING *",
                        (project_id, backup_id, Jsonb({"pid": pid}))).fetchone()


def running_verifications(conn) -> list[dict]:
    return conn.execute("SELECT * FROM backup_verifications WHERE state = 'running' "
                        "ORDER BY id").fetchall()


def finish_verification(conn, verification_id: int, ok: bool, details: dict,
                        error: str) -> dict:
    return conn.execute(
        """UPDATE backup_verifications SET state = %s, details = %s, error = %s,
                  finished_at = now(), seconds = extract(epoch FROM now() - started_at)
           WHERE id = %s RETURNING *""",
        ("ok" if ok else "failed", Jsonb(details), error, verification_id)).fetchone()


def latest_verification(conn, project_id: int) -> dict | None:
    """The project's newest finished verification, with its backup's kind and time."""
    return conn.execute(
        """SELECT v.*, b.kind AS backup_kind, b.started_at AS backup_started_at
           FROM backup_verifications v LEFT JOIN backups b ON b.id = v.backup_id
           WHERE v.project_id = %s AND v.state <> 'running'
           ORDER BY v.id DESC LIMIT 1""", (project_id,)).fetchone()


def latest_verifications(conn) -> list[dict]:
    """The newest finished verification of each project that has one, with its name."""
    return conn.execute(
        """SELECT DISTINCT ON (v.project_id) v.*, p.name AS project
           FROM backup_verifications v JOIN projects p ON p.id = v.project_id
           WHERE v.state <> 'running' ORDER BY v.project_id, v.id DESC""").fetchall()


# -- repository checks -------------------------------------------------------------------

def start_check(conn, read_data_subset: str) -> dict:
    return conn.execute("INSERT INTO repository_checks (read_data_subset) VALUES (%s) "
                        "RETURNING *", (read_data_subset,)).fetchone()


def finish_check(conn, check_id: int, ok: bool, output: str) -> dict:
    return conn.execute(
        """UPDATE repository_checks SET ok = %s, output = %s, finished_at = now(),
                  seconds = extract(epoch FROM now() - started_at)
           WHERE id = %s RETURNING *""",
        (ok, output[-OUTPUT_CHARS:], check_id)).fetchone()


def latest_check(conn) -> dict | None:
    return conn.execute("SELECT * FROM repository_checks WHERE ok IS NOT NULL "
                        "ORDER BY id DESC LIMIT 1").fetchone()
