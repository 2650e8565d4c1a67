"""Read-only summaries for pages and their JSON twins: one query each, not one per row."""

from __future__ import annotations

from psycopg import sql

from appliance.store.builds import ACTIVE_STATES

# A build in one of these states makes the project page poll (the builds_in_progress index).
IN_PROGRESS_STATES = ("queued", *ACTIVE_STATES)
# A cell's tooltip shows this much of the commit message's first line.
SUBJECT_CHARS = 100


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


def recent_builds_by_branch(conn, project_id: int, per_branch: int = 12,
                            branch_ids: list[int] | None = None) -> dict[int, list[dict]]:
    """The newest builds of every branch of a project (or of those branch ids), newest
    first, keyed by branch id:
    what a row of cells shows (id, commit, state, result, trigger and the first line of the
    commit message as `subject`), read newest first on each branch's index."""
    rows = conn.execute(
        """SELECT b.id, b.branch_id, b.commit, b.state, b.result, b.trigger,
                  left(split_part(b.commit_message, E'\\n', 1), %s) AS subject
           FROM branches br CROSS JOIN LATERAL (
               SELECT id, branch_id, commit, state, result, trigger, commit_message
               FROM builds WHERE branch_id = br.id ORDER BY id DESC LIMIT %s) b
           WHERE br.project_id = %s AND (%s::integer[] IS NULL OR br.id = ANY(%s))
           ORDER BY b.branch_id, b.id DESC""",
        (SUBJECT_CHARS, per_branch, project_id, branch_ids, branch_ids)).fetchall()
    by_branch: dict[int, list[dict]] = {}
    for row in rows:
        by_branch.setdefault(row["branch_id"], []).append(row)
    return by_branch


def branches_version(conn, project_id: int, per_branch: int = 12) -> tuple[str, bool]:
    """A digest of what recent_builds_by_branch and the project's branches show (branch
    names and stages; ids, states and results of the builds), and whether a build of the
    project is queued or in progress. Cheap: one row, read on the indexes."""
    row = conn.execute(VERSION_SQL, (project_id, per_branch, project_id)).fetchone()
    return row["digest"] or "", row["busy"]


# The states are spelt out, not a parameter: then even the generic plan of the prepared
# statement knows it may read the partial index builds_in_progress.
VERSION_SQL = sql.SQL(
    """SELECT md5(string_agg(concat_ws(':', br.id, br.name, br.stage, b.id, b.state, b.result),
                             ',' ORDER BY br.id, b.id DESC)) AS digest,
              EXISTS (SELECT 1 FROM builds WHERE project_id = %s AND state IN ({states})) AS busy
       FROM branches br LEFT JOIN LATERAL (
           SELECT id, state, result FROM builds
           WHERE branch_id = br.id ORDER BY id DESC LIMIT %s) b ON true
       WHERE br.project_id = %s""").format(
    states=sql.SQL(", ").join(map(sql.Literal, IN_PROGRESS_STATES)))


def steps_of_builds(conn, build_ids: list[int]) -> dict[int, list[dict]]:
    """The steps of several builds in order, keyed by build id."""
    rows = conn.execute("""SELECT * FROM build_steps WHERE build_id = ANY(%s)
                           ORDER BY build_id, position""", (list(build_ids),)).fetchall()
    by_build: dict[int, list[dict]] = {}
    for row in rows:
        by_build.setdefault(row["build_id"], []).append(row)
    return by_build


def branch_history(conn, branch_id: int, limit: int = 100,
                   before: int | None = None) -> list[dict]:
    """A branch's events, newest first, with the name of the person behind each; with
    `before`, only those older than that event id (the next page). Each carries its
    `build_id`; an event recorded with its build only in its data (`{"build": id}`, as
    older rows have it) gets that one."""
    return conn.execute(
        """SELECT e.id, e.project_id, e.branch_id, e.user_id, e.kind, e.message, e.data,
                  e.created_at, u.name AS user_name,
                  COALESCE(e.build_id, CASE WHEN e.data->>'build' ~ '^[0-9]{1,9}$'
                                            THEN (e.data->>'build')::integer END) AS build_id
           FROM events e LEFT JOIN users u ON u.id = e.user_id
           WHERE e.branch_id = %s AND (%s::bigint IS NULL OR e.id < %s)
           ORDER BY e.id DESC LIMIT %s""", (branch_id, before, before, limit)).fetchall()
