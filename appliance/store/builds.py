"""Builds: the durable queue, their states, steps and results."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from appliance.errors import NotFound

# A build in one of these states is being worked on by a worker.
ACTIVE_STATES = ("preparing", "installing", "testing", "starting")
FINISHED_STATES = ("running", "stopped", "failed", "done", "dropped")
PRIORITY = {"production": 0, "staging": 5, "development": 10}
QUEUE_CHANNEL = "appliance_builds"


def enqueue(conn, *, project: dict, branch: dict, commit: str, message: str = "",
            author: str = "", user_id: int | None = None, trigger: str = "push") -> dict:
    row = conn.execute(
        """INSERT INTO builds (project_id, branch_id, commit, commit_message, author, stage,
                               priority, created_by, trigger)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (project["id"], branch["id"], commit, message[:2000], author[:200], branch["stage"],
         PRIORITY[branch["stage"]], user_id, trigger)).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, str(row["id"])))
    return row


def claim_next(conn) -> dict | None:
    """Take the next queued build for this worker, or None. Two workers never get the same."""
    return conn.execute(
        """UPDATE builds SET state = 'preparing', started_at = now(), attempts = attempts + 1
           WHERE id = (SELECT id FROM builds WHERE state = 'queued'
                       ORDER BY priority, id FOR UPDATE SKIP LOCKED LIMIT 1)
           RETURNING *""").fetchone()


def get_build(conn, build_id: int) -> dict:
    row = conn.execute(
        """SELECT b.*, p.name AS project, br.name AS branch
           FROM builds b JOIN projects p ON p.id = b.project_id
           JOIN branches br ON br.id = b.branch_id WHERE b.id = %s""", (build_id,)).fetchone()
    if row is None:
        raise NotFound(f"no build #{build_id}")
    return row


def list_builds(conn, project: dict, branch: str | None = None, limit: int = 100,
                before: int | None = None) -> list[dict]:
    """The project's builds (of one branch if named), newest first; with `before`, only
    those older than that build id (the next page)."""
    return conn.execute(
        """SELECT b.*, br.name AS branch, p.name AS project
           FROM builds b JOIN branches br ON br.id = b.branch_id
           JOIN projects p ON p.id = b.project_id
           WHERE b.project_id = %s AND (%s::text IS NULL OR br.name = %s)
                 AND (%s::integer IS NULL OR b.id < %s)
           ORDER BY b.id DESC LIMIT %s""",
        (project["id"], branch, branch, before, before, limit)).fetchall()


def builds_of_branch(conn, branch_id: int, limit: int = 12) -> list[dict]:
    return conn.execute("SELECT * FROM builds WHERE branch_id = %s ORDER BY id DESC LIMIT %s",
                        (branch_id, limit)).fetchall()


def _adapt(fields: dict) -> dict:
    """Column values as psycopg takes them: lists and dicts go to jsonb columns."""
    return {key: Jsonb(value) if isinstance(value, (list, dict)) else value
            for key, value in fields.items()}


def set_state(conn, build_id: int, state: str, **fields) -> None:
    """Move a build to a state, setting any other columns given (JSON lists wrapped)."""
    fields = _adapt(fields)
    assignments = ", ".join(f"{key} = %({key})s" for key in fields)
    finished = ", finished_at = now()" if state in ("running", "failed", "done") else ""
    sql = f"UPDATE builds SET state = %(state)s{finished}"
    if assignments:
        sql += ", " + assignments
    conn.execute(sql + " WHERE id = %(id)s", {"state": state, "id": build_id, **fields})


def update(conn, build_id: int, **fields) -> None:
    fields = _adapt(fields)
    assignments = ", ".join(f"{key} = %({key})s" for key in fields)
    conn.execute(f"UPDATE builds SET {assignments} WHERE id = %(id)s", {"id": build_id, **fields})


def in_flight(conn) -> list[dict]:
    return conn.execute("SELECT * FROM builds WHERE state = ANY(%s) ORDER BY id",
                        (list(ACTIVE_STATES),)).fetchall()


def running_servers(conn) -> list[dict]:
    return conn.execute(
        """SELECT b.*, p.name AS project FROM builds b JOIN projects p ON p.id = b.project_id
           WHERE b.state = 'running' ORDER BY b.last_used_at""").fetchall()


def touch(conn, build_id: int) -> None:
    conn.execute("UPDATE builds SET last_used_at = now() WHERE id = %s", (build_id,))


def plan_steps(conn, build_id: int, names: list[str]) -> None:
    conn.execute("DELETE FROM build_steps WHERE build_id = %s", (build_id,))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO build_steps (build_id, position, name) VALUES (%s, %s, %s)",
                        [(build_id, pos, name) for pos, name in enumerate(names)])


def step_started(conn, build_id: int, name: str) -> None:
    conn.execute("""UPDATE build_steps SET state = 'running', started_at = now()
                    WHERE build_id = %s AND name = %s""", (build_id, name))


def step_finished(conn, build_id: int, name: str, state: str, seconds: float,
                  detail: str = "") -> None:
    conn.execute("""UPDATE build_steps SET state = %s, finished_at = now(), seconds = %s,
                           detail = %s WHERE build_id = %s AND name = %s""",
                 (state, seconds, detail[:4000], build_id, name))


def skip_pending_steps(conn, build_id: int) -> None:
    conn.execute("""UPDATE build_steps SET state = 'skipped'
                    WHERE build_id = %s AND state IN ('pending', 'running')""", (build_id,))


def steps(conn, build_id: int) -> list[dict]:
    return conn.execute("SELECT * FROM build_steps WHERE build_id = %s ORDER BY position",
                        (build_id,)).fetchall()


def add_event(conn, *, project_id: int, kind: str, message: str, branch_id: int | None = None,
              build_id: int | None = None, user_id: int | None = None,
              data: dict | None = None) -> None:
    conn.execute("""INSERT INTO events (project_id, branch_id, build_id, user_id, kind, message,
                                        data) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                 (project_id, branch_id, build_id, user_id, kind, message, Jsonb(data or {})))


def events_of_branch(conn, branch_id: int, limit: int = 100) -> list[dict]:
    return conn.execute(
        """SELECT e.*, u.name AS user_name FROM events e LEFT JOIN users u ON u.id = e.user_id
           WHERE e.branch_id = %s ORDER BY e.id DESC LIMIT %s""", (branch_id, limit)).fetchall()


def request_task(conn, kind: str, build_id: int, user_id: int | None = None) -> dict:
    """Ask the workers to do something to a build (start its server again, ...)."""
    row = conn.execute("INSERT INTO tasks (kind, build_id, user_id) VALUES (%s, %s, %s) RETURNING *",
                       (kind, build_id, user_id)).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, f"task:{row['id']}"))
    return row


def claim_task(conn) -> dict | None:
    return conn.execute(
        """UPDATE tasks SET state = 'running'
           WHERE id = (SELECT id FROM tasks WHERE state = 'queued'
                       ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
           RETURNING *""").fetchone()


def finish_task(conn, task_id: int, error: str = "") -> None:
    conn.execute("UPDATE tasks SET state = %s, error = %s WHERE id = %s",
                 ("failed" if error else "done", error[:2000], task_id))


def pending_task(conn, build_id: int) -> dict | None:
    return conn.execute("""SELECT * FROM tasks WHERE build_id = %s AND state IN ('queued', 'running')
                           ORDER BY id DESC LIMIT 1""", (build_id,)).fetchone()


def branch_busy(conn, branch_id: int) -> bool:
    """Is a build of this branch queued or being worked on?"""
    return conn.execute("SELECT 1 FROM builds WHERE branch_id = %s AND state = ANY(%s)",
                        (branch_id, ["queued", *ACTIVE_STATES])).fetchone() is not None


def latest_build(conn, branch_id: int, states: tuple[str, ...] | None = None) -> dict | None:
    if states is None:
        return conn.execute("SELECT * FROM builds WHERE branch_id = %s ORDER BY id DESC LIMIT 1",
                            (branch_id,)).fetchone()
    return conn.execute("""SELECT * FROM builds WHERE branch_id = %s AND state = ANY(%s)
                           ORDER BY id DESC LIMIT 1""", (branch_id, list(states))).fetchone()
