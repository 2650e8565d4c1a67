"""Locks shared by backups and deploys, as PostgreSQL advisory locks.

Each is taken on a connection of its own (not the pool's), so a process that dies, however
it dies, releases it with its session. A waiter gives up after [backup] lock_wait_minutes
with a BackupError naming who holds it (the holder's `application_name` says what it is
doing).

project_lock      one per project: a backup, a production deploy, a restore; taken again
                  by the thread that holds it (a deploy making its update backup), it is
                  simply held on
repository_lock   the backup repository: shared by backups, exclusive for restic's
                  forget, prune and check
"""

from __future__ import annotations

import contextlib
import threading

import psycopg

from appliance.errors import BackupError

# Keys of pg_advisory_lock(space, key): the project's id, or 0 for the repository.
PROJECT_LOCK = 0x0DD0BAC1
REPOSITORY_LOCK = 0x0DD0BAC2

_held = threading.local()  # the projects whose lock this thread holds


@contextlib.contextmanager
def project_lock(svc, project_id: int, purpose: str):
    """Held by a backup, and by a production deploy, of the project: the other waits.
    Taken again by the thread that holds it (a deploy making its update backup), it is
    simply held on."""
    held = _held.__dict__.setdefault("projects", set())
    if project_id in held:
        yield
        return
    with advisory(svc, PROJECT_LOCK, project_id, False, purpose, "the project"):
        held.add(project_id)
        try:
            yield
        finally:
            held.discard(project_id)


@contextlib.contextmanager
def repository_lock(svc, exclusive: bool, purpose: str):
    """Shared by backups; exclusive for forget, prune and check."""
    with advisory(svc, REPOSITORY_LOCK, 0, not exclusive, purpose, "the backup repository"):
        yield


@contextlib.contextmanager
def advisory(svc, space: int, key: int, shared: bool, purpose: str, what: str,
             wait_ms: int | None = None):
    """pg_advisory_lock(space, key), shared or not, held for the block."""
    if wait_ms is None:
        wait_ms = svc.config.backup.lock_wait_minutes * 60_000
    conn = svc.db.connect_listener()  # its own session: a dead process releases the lock
    try:
        conn.execute("SELECT set_config('application_name', %s, false), "
                     "set_config('lock_timeout', %s, false)",
                     (f"appliance: {purpose}"[:63], str(int(wait_ms))))
        function = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
        try:
            conn.execute(f"SELECT {function}(%s, %s)", (space, key))
        except psycopg.errors.LockNotAvailable:
            who = _holders(conn, space, key)
            raise BackupError(f"{purpose}: {what} is busy ({who or 'held elsewhere'}); "
                              f"gave up after {wait_ms / 60000:g} minutes") from None
        yield
    finally:
        conn.close()


def _holders(conn, space: int, key: int) -> str:
    rows = conn.execute(
        """SELECT DISTINCT a.application_name FROM pg_locks l
           JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
                 AND l.objsubid = 2""", (space, key)).fetchall()
    return ", ".join(row[0] for row in rows if row[0])
