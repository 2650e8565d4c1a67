"""The build queue: a bounded pool of workers fed from the builds table.

A dispatcher thread LISTENs for new work (the push notifies) and also looks every
`poll_seconds`, claims queued builds with FOR UPDATE SKIP LOCKED while a worker is free,
and hands each to a worker thread. Tasks (start a stopped server) have their own small
pool so they never wait behind an hour-long build. On stop, no new work is claimed and
running builds finish (SIGTERM finishes cleanly); a build cut short by a kill is found and
dealt with by reconcile at the next start.
"""

from __future__ import annotations

import logging
import select
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

import psycopg

from appliance.errors import ApplianceError
from appliance.jobs import containers, development, production, staging
from appliance.jobs.steps import BuildFailed
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)

TASK_WORKERS = 2
# After a failed connection to the state database, wait before trying again.
RECONNECT_SECONDS = 2.0
PIPELINES = {"development": development.run, "staging": staging.run,
             "production": production.run}


def run_build(svc, build: dict) -> None:
    """Run a claimed build's pipeline; whatever happens, the build ends in a final state."""
    with svc.db.transaction() as conn:
        build = builds_store.get_build(conn, build["id"])
    try:
        PIPELINES[build["stage"]](svc, build)
    except BuildFailed as exc:
        _fail(svc, build, str(exc))
    except ApplianceError as exc:
        log.warning("build %s failed: %s", build["id"], exc)
        _fail(svc, build, str(exc))
    except Exception as exc:  # a bug must not leave the build stuck in its state
        log.error("build %s crashed:\n%s", build["id"], traceback.format_exc())
        _fail(svc, build, f"internal error: {exc.__class__.__name__}: {exc}")


def _fail(svc, build: dict, reason: str) -> None:
    for info in svc.docker.find(build_id=build["id"]):
        if info.role != "server" or info.status != "running":
            svc.docker.remove(info.id)
    with svc.db.transaction() as conn:
        current = builds_store.get_build(conn, build["id"])
        builds_store.skip_pending_steps(conn, build["id"])
        builds_store.set_state(conn, build["id"], "failed", result="failure",
                               reason=current["reason"] or reason)


def run_task(svc, task: dict) -> None:
    error = ""
    try:
        with svc.db.transaction() as conn:
            build = builds_store.get_build(conn, task["build_id"])
        if task["kind"] == "start_server":
            start_again(svc, build)
        elif task["kind"] == "stop_server":
            containers.stop_server(svc, build, "server stopped by a user")
    except ApplianceError as exc:
        error = str(exc)
    except Exception as exc:  # recorded on the task; the worker carries on
        log.error("task %s crashed:\n%s", task["id"], traceback.format_exc())
        error = f"internal error: {exc}"
    with svc.db.transaction() as conn:
        builds_store.finish_task(conn, task["id"], error)


def start_again(svc, build: dict) -> None:
    """Start a stopped build's server on its kept database."""
    from appliance.store import projects as projects_store
    if build["state"] != "stopped":
        raise BuildFailed(f"build #{build['id']} is {build['state']}, not stopped")
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
        builds_store.set_state(conn, build["id"], "starting")
    try:
        port = containers.start_server(svc, project, build)
        containers.server_ready(svc, build["id"], port)
    except ApplianceError:
        for info in svc.docker.find(build_id=build["id"], role="server"):
            svc.docker.remove(info.id)
        with svc.db.transaction() as conn:
            builds_store.set_state(conn, build["id"], "stopped", host_port=None)
        raise
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], "running", host_port=port)
        builds_store.touch(conn, build["id"])
    containers.enforce_server_cap(svc, keep=build["id"])


class BuildQueue:
    def __init__(self, svc):
        self.svc = svc
        self.size = max(1, svc.config.workers.builds)
        self.builds = ThreadPoolExecutor(self.size, thread_name_prefix="build")
        self.tasks = ThreadPoolExecutor(TASK_WORKERS, thread_name_prefix="task")
        self.busy = threading.Semaphore(self.size)
        self.task_slots = threading.Semaphore(TASK_WORKERS)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._dispatch_forever, name="dispatcher",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, wait: bool = True) -> None:
        """Claim nothing more; with wait, let running builds finish."""
        self.stopping.set()
        self.thread.join(timeout=10)
        self.builds.shutdown(wait=wait, cancel_futures=True)
        self.tasks.shutdown(wait=wait, cancel_futures=True)

    def _dispatch_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.svc.db.connect_listener() as listener:
                    listener.execute(f"LISTEN {builds_store.QUEUE_CHANNEL}")
                    while not self.stopping.is_set():
                        self.dispatch()
                        self._wait_for_notice(listener)
            except psycopg.Error as exc:
                log.warning("queue: state database unavailable (%s), retrying", exc)
                self.stopping.wait(RECONNECT_SECONDS)

    def _wait_for_notice(self, listener) -> None:
        """Sleep until a notification arrives or poll_seconds pass. (select() on the
        socket works with psycopg 3.1, whose notifies() has no timeout.)"""
        readable, _, _ = select.select([listener.fileno()], [], [],
                                       self.svc.config.workers.poll_seconds)
        if readable:
            listener.execute("SELECT 1")  # consumes the pending notifications

    def dispatch(self) -> None:
        """Hand queued builds and tasks to free workers."""
        while not self.stopping.is_set() and self.busy.acquire(blocking=False):
            with self.svc.db.transaction() as conn:
                build = builds_store.claim_next(conn)
            if build is None:
                self.busy.release()
                break
            log.info("build %s claimed (%s)", build["id"], build["stage"])
            self.builds.submit(self._guarded, self.busy, run_build, build)
        while not self.stopping.is_set() and self.task_slots.acquire(blocking=False):
            with self.svc.db.transaction() as conn:
                task = builds_store.claim_task(conn)
            if task is None:
                self.task_slots.release()
                break
            self.tasks.submit(self._guarded, self.task_slots, run_task, task)

    def _guarded(self, slot, func, item) -> None:
        try:
            func(self.svc, item)
        finally:
            slot.release()
