"""Backups: one row per attempt, with what restic said about it.

A row is `running` while its snapshots are being made, then `done` or `failed`; retention
sets `forgotten_at` when its snapshots leave the repository (the row stays, for the
history of sizes).
"""

from __future__ import annotations

from datetime import datetime

from psycopg.types.json import Jsonb

from appliance.errors import NotFound, UserError

KINDS = ("daily", "update", "manual", "safety")
STATES = ("running", "done", "failed")
# What a list shows unless asked for more.
LIST_LIMIT = 100

_SELECT = """SELECT bk.*, p.name AS project, br.name AS branch
             FROM backups bk JOIN projects p ON p.id = bk.project_id
             LEFT JOIN branches br ON br.id = bk.branch_id"""


def start(conn, *, project: dict, branch: dict, build: dict, kind: str,
          user: dict | None = None, started_at: datetime | None = None) -> dict:
    """A new running backup."""
    if kind not in KINDS:
        raise UserError(f"unknown kind of backup {kind!r} (known: {', '.join(KINDS)})")
    return conn.execute(
        """INSERT INTO backups (project_id, branch_id, build_id, kind, created_by, started_at)
           VALUES (%s, %s, %s, %s, %s, coalesce(%s, now())) RETURNING *""",
        (project["id"], branch["id"], build["id"], kind, user["id"] if user else None,
         started_at)).fetchone()


def update(conn, backup_id: int, **fields) -> None:
    """Set columns of a backup (dicts go to jsonb)."""
    values = {key: Jsonb(value) if isinstance(value, dict) else value
              for key, value in fields.items()}
    assignments = ", ".join(f"{key} = %({key})s" for key in values)
    conn.execute(f"UPDATE backups SET {assignments} WHERE id = %(id)s",
                 {**values, "id": backup_id})


def finish(conn, backup_id: int, state: str, **fields) -> dict:
    """End a running backup as done or failed, with its figures."""
    if state not in ("done", "failed"):
        raise ValueError(f"a backup ends done or failed, not {state!r}")
    update(conn, backup_id, state=state, **fields)
    conn.execute("""UPDATE backups SET finished_at = now(),
                           seconds = coalesce(seconds, extract(epoch FROM now() - started_at))
                    WHERE id = %s AND finished_at IS NULL""", (backup_id,))
    return get(conn, backup_id)


def get(conn, backup_id: int) -> dict:
    row = conn.execute(_SELECT + " WHERE bk.id = %s", (backup_id,)).fetchone()
    if row is None:
        raise NotFound(f"no backup #{backup_id}")
    return row


def list_backups(conn, project: dict, branch: dict | None = None, *,
                 forgotten: bool = False, limit: int = LIST_LIMIT) -> list[dict]:
    """A project's backups (of one branch if given), newest first; those retention
    removed from the repository only when asked."""
    return conn.execute(
        _SELECT + """ WHERE bk.project_id = %s AND (%s::integer IS NULL OR bk.branch_id = %s)
                      AND (%s OR bk.forgotten_at IS NULL)
                      ORDER BY bk.id DESC LIMIT %s""",
        (project["id"], branch and branch["id"], branch and branch["id"], forgotten,
         limit)).fetchall()


def kept(conn, project_id: int) -> list[dict]:
    """The project's backups whose snapshots are in the repository (or being made)."""
    return conn.execute("SELECT * FROM backups WHERE project_id = %s AND forgotten_at IS NULL "
                        "ORDER BY id", (project_id,)).fetchall()


def latest_done(conn, branch_id: int) -> dict | None:
    """The branch's newest finished backup still in the repository."""
    return conn.execute(
        """SELECT * FROM backups WHERE branch_id = %s AND state = 'done'
                  AND forgotten_at IS NULL AND files_snapshot IS NOT NULL
           ORDER BY id DESC LIMIT 1""", (branch_id,)).fetchone()


def since(conn, project_id: int, kind: str, moment: datetime) -> list[dict]:
    """The project's backups of a kind started at or after `moment`."""
    return conn.execute("SELECT * FROM backups WHERE project_id = %s AND kind = %s "
                        "AND started_at >= %s ORDER BY id", (project_id, kind, moment)).fetchall()


def mark_forgotten(conn, backup_ids: list[int]) -> None:
    if backup_ids:
        conn.execute("UPDATE backups SET forgotten_at = now() WHERE id = ANY(%s) "
                     "AND forgotten_at IS NULL", (list(backup_ids),))


def forget_failed_before(conn, project_id: int, moment: datetime) -> None:
    """Failed backups stay listed (the failure is news) until `moment` has passed them."""
    conn.execute("UPDATE backups SET forgotten_at = now() WHERE project_id = %s "
                 "AND state = 'failed' AND forgotten_at IS NULL AND started_at < %s",
                 (project_id, moment))


def running(conn) -> list[dict]:
    return conn.execute("SELECT * FROM backups WHERE state = 'running' ORDER BY id").fetchall()


def production_projects(conn) -> list[dict]:
    """Projects with a production branch, with that branch's id."""
    return conn.execute(
        """SELECT p.*, br.id AS production_branch_id FROM projects p
           JOIN branches br ON br.project_id = p.id AND br.stage = 'production'
           ORDER BY p.name""").fetchall()


def serving_build(conn, branch_id: int) -> dict | None:
    """The branch's build whose database is the branch's data: the newest one running or
    stopped (its server may be down; its database is kept)."""
    return conn.execute(
        """SELECT * FROM builds WHERE branch_id = %s AND state IN ('running', 'stopped')
                  AND database IS NOT NULL ORDER BY id DESC LIMIT 1""",
        (branch_id,)).fetchone()


def to_json(row: dict) -> dict:
    """One backup as the CLI and the API show it."""
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {"id": row["id"], "project": row.get("project"), "branch": row.get("branch"),
            "build_id": row["build_id"], "kind": row["kind"], "state": row["state"],
            "started_at": iso(row["started_at"]), "finished_at": iso(row["finished_at"]),
            "seconds": row["seconds"], "dump_snapshot": row["dump_snapshot"],
            "files_snapshot": row["files_snapshot"], "dump_bytes": row["dump_bytes"],
            "files_bytes": row["files_bytes"], "bytes_added": row["bytes_added"],
            "sha256": row["sha256"], "error": row["error"], "warnings": row["warnings"],
            "forgotten_at": iso(row["forgotten_at"])}
