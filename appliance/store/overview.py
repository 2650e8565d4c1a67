"""Read-only summaries for pages and their JSON twins: one query each, not one per row."""

from __future__ import annotations


def project_summaries(conn, project_ids: list[int]) -> dict[int, dict]:
    """Per project: its number of branches and its latest build (or None)."""
    rows = conn.execute(
        """SELECT p.id,
                  (SELECT count(*) FROM branches br WHERE br.project_id = p.id) AS branch_count,
                  lb.id AS build_id, lb.state, lb.result
           FROM projects p
           LEFT JOIN LATERAL (SELECT id, state, result FROM builds b
                              WHERE b.project_id = p.id ORDER BY b.id DESC LIMIT 1) lb ON true
           WHERE p.id = ANY(%s)""", (list(project_ids),)).fetchall()
    summaries = {}
    for row in rows:
        latest = None
        if row["build_id"] is not None:
            latest = {"id": row["build_id"], "state": row["state"], "result": row["result"]}
        summaries[row["id"]] = {"branch_count": row["branch_count"], "latest_build": latest}
    return summaries


def recent_builds_by_branch(conn, project_id: int, per_branch: int = 12) -> dict[int, list[dict]]:
    """The newest builds of every branch of a project, newest first, keyed by branch id."""
    rows = conn.execute(
        """SELECT * FROM (
               SELECT b.*, row_number() OVER (PARTITION BY b.branch_id ORDER BY b.id DESC) AS n
               FROM builds b WHERE b.project_id = %s) ranked
           WHERE n <= %s ORDER BY branch_id, id DESC""", (project_id, per_branch)).fetchall()
    by_branch: dict[int, list[dict]] = {}
    for row in rows:
        by_branch.setdefault(row["branch_id"], []).append(row)
    return by_branch


def steps_of_builds(conn, build_ids: list[int]) -> dict[int, list[dict]]:
    """The steps of several builds in order, keyed by build id."""
    rows = conn.execute("""SELECT * FROM build_steps WHERE build_id = ANY(%s)
                           ORDER BY build_id, position""", (list(build_ids),)).fetchall()
    by_build: dict[int, list[dict]] = {}
    for row in rows:
        by_build.setdefault(row["build_id"], []).append(row)
    return by_build
