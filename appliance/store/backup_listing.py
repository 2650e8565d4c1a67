"""What the Backups tab reads besides the backups themselves: the verification of each
listed backup, and the branches a backup may be restored or imported into."""

from __future__ import annotations


def verifications_by_backup(conn, backup_ids: list[int]) -> dict[int, dict]:
    """The newest finished verification of each of these backups, by backup id."""
    if not backup_ids:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (backup_id) * FROM backup_verifications
           WHERE backup_id = ANY(%s) AND state <> 'running'
           ORDER BY backup_id, id DESC""", (list(backup_ids),)).fetchall()
    return {row["backup_id"]: row for row in rows}


def restore_targets(conn, project_id: int) -> list[dict]:
    """The project's branches a backup may replace the data of: production first, then
    the staging branches by name."""
    return conn.execute(
        """SELECT * FROM branches WHERE project_id = %s AND stage IN ('production', 'staging')
           ORDER BY stage <> 'production', name""", (project_id,)).fetchall()
