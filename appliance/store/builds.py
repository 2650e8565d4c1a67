"""Builds: the durable queue, their states, steps and results."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from appliance.errors import NotFound
from appliance.store import states
from appliance.store.states import BuildState

# A build in one of these states is being worked on by a worker.
ACTIVE_STATES = tuple(state.value for state in states.ACTIVE)
FINISHED_STATES = tuple(state.value for state in states.FINISHED)
PRIORITY = {"production": 0, "staging": 5, "development": 10}
QUEUE_CHANNEL = "appliance_builds"


def enqueue(conn, *, project: dict, branch: dict, commit: str, message: str = "",
            author: str = "", user_id: int | None = None, trigger: str = "push",
            source: dict | None = None) -> dict:
    """Queue a build. `source` is where a restore or an import takes its data from
    ({"backup": id} or {"file": path, "name": ..., "remove_after": ...})."""
    row = conn.execute(
        """INSERT INTO builds (project_id, branch_id, commit, commit_message, author, stage,
                               priority, created_by, trigger, source)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (project["id"], branch["id"], commit, message[:2000], author[:200], branch["stage"],
         PRIORITY[branch["stage"]], user_id, trigger, Jsonb(source or {}))).fetchone()
    conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, str(row["id"])))
    return row


def claim_next(conn) -> dict | None:
    """Take the next queued build for this worker, or None. Two workers never get the same."""
    return conn.execute(
        """UPDATE builds SET state = %s, started_at = now(), attempts = attempts + 1
           WHERE id = (SELECT id FROM builds WHERE state = %s
                       ORDER BY priority, id FOR UPDATE SKIP LOCKED LIMIT 1)
           RETURNING *""", (BuildState.PREPARING.value, BuildState.QUEUED.value)).fetchone()


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


def set_state(conn, build_id: int, state: str, **fields) -> BuildState:
    """Move a build to a state, setting any other columns given (JSON lists wrapped), and
    return the state it was in. A move the table of appliance.store.states does not
    allow is refused (IllegalMove) and changes nothing; the build's row stays locked to
    the end of the transaction, so two moves of one build happen one after the other."""
    row = conn.execute("SELECT state FROM builds WHERE id = %s FOR UPDATE",
                       (build_id,)).fetchone()
    if row is None:
        raise NotFound(f"no build #{build_id}")
    new = states.check_move(build_id, row["state"], state)
    fields = _adapt(fields)
    assignments = "".join(f", {key} = %({key})s" for key in fields)
    finished = ", finished_at = now()" if new in states.ENDINGS else ""
    conn.execute(f"UPDATE builds SET state = %(state)s{finished}{assignments} WHERE id = %(id)s",
                 {"state": new.value, "id": build_id, **fields})
    return BuildState(row["state"])


def update(conn, build_id: int, **fields) -> None:
    """Set columns of a build other than its state (which only set_state moves)."""
    if "state" in fields:
        raise ValueError("a build's state changes through set_state, which checks the move")
    fields = _adapt(fields)
    assignments = ", ".join(f"{key} = %({key})s" for key in fields)
    conn.execute(f"UPDATE builds SET {assignments} WHERE id = %(id)s", {"id": build_id, **fields})


def in_flight(conn) -> list[dict]:
    return conn.execute("SELECT * FROM builds WHERE state = ANY(%s) ORDER BY id",
                        (list(ACTIVE_STATES),)).fetchall()


def running_servers(conn) -> list[dict]:
    return conn.execute(
        """SELECT b.*, p.name AS project FROM builds b JOIN projects p ON p.id = b.project_id
           WHERE b.state = %s ORDER BY b.last_used_at""", (BuildState.RUNNING.value,)).fetchall()


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


def branch_busy(conn, branch_id: int, lock: bool = False) -> bool:
    """Is a build of this branch queued or being worked on? With `lock`, the branch's row
    stays locked to the end of the transaction: two requests that ask at once get their
    answers one after the other, so they cannot both queue a build."""
    if lock:
        conn.execute("SELECT 1 FROM branches WHERE id = %s FOR UPDATE", (branch_id,))
    return conn.execute("SELECT 1 FROM builds WHERE branch_id = %s AND state = ANY(%s)",
                        (branch_id, [BuildState.QUEUED.value, *ACTIVE_STATES])
                        ).fetchone() is not None


def latest_build(conn, branch_id: int, states: tuple[str, ...] | None = None) -> dict | None:
    if states is None:
        return conn.execute("SELECT * FROM builds WHERE branch_id = %s ORDER BY id DESC LIMIT 1",
                            (branch_id,)).fetchone()
    return conn.execute("""SELECT * FROM builds WHERE branch_id = %s AND state = ANY(%s)
                           ORDER BY id DESC LIMIT 1""", (branch_id, list(states))).fetchone()


def last_stopped_before(conn, branch_id: int, build_id: int) -> dict | None:
    """The branch's newest stopped build older than `build_id` (the last good one)."""
    return conn.execute(
        """SELECT * FROM builds WHERE branch_id = %s AND id < %s AND state = %s
           ORDER BY id DESC LIMIT 1""",
        (branch_id, build_id, BuildState.STOPPED.value)).fetchone()


def ids_with_server(conn) -> set[int]:
    """The builds whose server container should be there: running or starting."""
    rows = conn.execute("SELECT id FROM builds WHERE state = ANY(%s)",
                        ([BuildState.RUNNING.value, BuildState.STARTING.value],))
    return {row["id"] for row in rows}


def collectable(conn, dev_keep_seconds: float) -> list[dict]:
    """Builds due for collection, oldest first: development builds older than
    `dev_keep_seconds` that ended, and the staging builds of a staging branch older than
    its newest running one. Never production."""
    ended = [BuildState.RUNNING.value, BuildState.STOPPED.value, BuildState.FAILED.value]
    return conn.execute(
        """SELECT b.* FROM builds b
           WHERE b.stage = 'development' AND b.state = ANY(%(ended)s)
             AND b.created_at < now() - make_interval(secs => %(keep)s)
           UNION
           SELECT b.* FROM builds b JOIN branches br ON br.id = b.branch_id
           WHERE b.stage = 'staging' AND br.stage = 'staging'
             AND b.state = ANY(%(replaced)s)
             AND b.id < (SELECT max(id) FROM builds
                         WHERE branch_id = b.branch_id AND state = %(running)s)
           ORDER BY id""",
        {"ended": ended, "replaced": [*ended, BuildState.DONE.value],
         "running": BuildState.RUNNING.value, "keep": dev_keep_seconds}).fetchall()


def database_shared(conn, database: str, build_id: int) -> bool:
    """Is `database` also another build's (staging's "update" hands it over)?"""
    return conn.execute("SELECT 1 FROM builds WHERE database = %s AND id <> %s",
                        (database, build_id)).fetchone() is not None


def requeue_running_tasks(conn) -> int:
    """Tasks a stop cut short are queued again; returns how many."""
    return conn.execute("UPDATE tasks SET state = 'queued' WHERE state = 'running'").rowcount
