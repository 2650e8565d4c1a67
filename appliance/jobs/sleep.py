"""Builds that sleep when nobody uses them, and wake on the next request.

Every request to a development or staging build passes the daemon's /_proxy/auth on its
way (Caddy's forward_auth): `touch` notes the build as used, in memory; `flush` writes
those times to builds.last_used_at. Every [proxy] check_seconds, `put_to_sleep` stops
the servers of development and staging builds unused for [builds] sleep_minutes and
marks them asleep. A sleeping build keeps its server container, stopped: waking it is a
`docker start` of that container (jobs/containers.py), not a new one. Its names lead to
/_proxy/wake, which asks the task workers to start the server (`wake`) and holds the
visit until the build answers (`wait_awake`), then sends it to the same address again;
a visit that cannot be held gets a page that reloads itself. Production never sleeps.
The cap on running servers counts awake builds only: a sleeping build is stopped.
Reconcile keeps a sleeping build's stopped container; dropping the build, or stopping
it for good, removes it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from appliance.jobs import containers, proxy
from appliance.store import builds as builds_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

SLEEPING_STAGES = ("development", "staging")
# A held visit looks whether its build is awake each time the proxy loads new routes
# (a start that succeeds loads its names), and at least this often (a failed start).
WAKE_CHECK_SECONDS = 0.25

_used: dict[int, float] = {}
_used_lock = threading.Lock()


def touch(build_id: int) -> None:
    """The build was just used (a request through the proxy)."""
    with _used_lock:
        _used[int(build_id)] = time.time()


def flush(svc) -> int:
    """Write the noted uses to the store; returns how many builds."""
    with _used_lock:
        used = dict(_used)
        _used.clear()
    if not used:
        return 0
    with svc.db.transaction() as conn:
        conn.execute(
            """UPDATE builds b SET last_used_at = greatest(b.last_used_at, u.at)
               FROM (SELECT unnest(%s::integer[]) AS id,
                            to_timestamp(unnest(%s::double precision[])) AS at) u
               WHERE b.id = u.id""", (list(used), list(used.values())))
    return len(used)


def idle_servers(conn, before: datetime) -> list[dict]:
    """Running development and staging builds last used before `before`."""
    return conn.execute(
        """SELECT * FROM builds WHERE state = %s AND stage = ANY(%s) AND last_used_at < %s
           ORDER BY last_used_at""",
        (BuildState.RUNNING.value, list(SLEEPING_STAGES), before)).fetchall()


def put_to_sleep(svc, now: datetime | None = None) -> list[int]:
    """Stop the servers of builds idle for [builds] sleep_minutes; returns their ids."""
    minutes = svc.config.builds.sleep_minutes
    if minutes <= 0:
        return []
    flush(svc)
    now = now or datetime.now(timezone.utc)
    with svc.db.transaction() as conn:
        idle = idle_servers(conn, now - timedelta(minutes=minutes))
    slept = []
    for build in idle:
        # Marked first: once its server is gone, its names lead to the wake-up at once.
        with svc.db.transaction() as conn:
            conn.execute("UPDATE builds SET asleep = true WHERE id = %s", (build["id"],))
        containers.stop_server(svc, build, f"asleep: unused for {minutes:g} minutes; the "
                                           "next visit wakes it", keep=True)
        slept.append(build["id"])
    if slept:
        log.info("put %d idle build(s) to sleep: %s", len(slept), slept)
    return slept


def wake(svc, build_id: int) -> dict:
    """Ask the task workers to start a sleeping build (once: a second visitor joins the
    first one's start). Returns the build as it is now."""
    with svc.db.transaction() as conn:
        build = builds_store.get_build(conn, build_id)
        if (build["state"] == BuildState.STOPPED and build.get("asleep")
                and builds_store.pending_task(conn, build_id) is None):
            builds_store.request_task(conn, "start_server", build_id)
            log.info("build %s: waking up for a visitor", build_id)
    touch(build_id)
    return build


def wait_awake(svc, build_id: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a woken build to run, then make sure the proxy
    routes its names to it. True when it does; False at the timeout, or at once when its
    start failed (nothing is under way for it any more)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = proxy.loads(svc)
        with svc.db.transaction() as conn:
            build = builds_store.get_build(conn, build_id)
            pending = builds_store.pending_task(conn, build_id)
        if build["state"] == BuildState.RUNNING and build["host_port"]:
            # The start loads the new routes itself; whichever comes first loads them.
            return proxy.refresh(svc)
        if pending is None and build["state"] != BuildState.STARTING:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        proxy.wait_for_load(svc, seen, min(left, WAKE_CHECK_SECONDS))


def sleeping_ids(conn) -> set[int]:
    """The builds asleep: each may keep its server container, stopped."""
    rows = conn.execute("SELECT id FROM builds WHERE state = %s AND asleep",
                        (BuildState.STOPPED.value,))
    return {row["id"] for row in rows}
