"""The build queue: a bounded pool of workers fed from the builds table.

A dispatcher thread LISTENs for new work (the push notifies) and also looks every
`poll_seconds`, claims queued builds with FOR UPDATE SKIP LOCKED while a worker is free,
and hands each to a worker thread. Tasks (start a stopped server, back a branch up now)
have their own small pool so they never wait behind an hour-long build. On stop
(`drain`), no new work is claimed and running builds and tasks get a grace period to
finish; a build cut short (by a kill, or past the grace) is found and dealt with by
reconcile at the next start.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import psycopg

from appliance.errors import ApplianceError
from appliance.jobs import backup, containers, development, editor, production, staging
from appliance.jobs.steps import BuildFailed
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

TASK_WORKERS = 2
# After a failed connection to the state database, wait before trying again.
RECONNECT_SECONDS = 2.0
# On drain, how long to wait for the dispatcher to leave its wait for notifications (it
# wakes every poll_seconds); a dispatcher stuck on the database is not waited for longer.
DISPATCHER_JOIN_SECONDS = 5.0
PIPELINES = {"development": development.run, "staging": staging.run,
             "production": production.run}


def run_build(svc, build: dict) -> None:
    """Run a claimed build's pipeline; whatever happens, the build ends in a final state."""
    with svc.db.transaction() as conn:
        build = builds_store.get_build(conn, build["id"])
    try:
        PIPELINES[build["stage"]](svc, build)
    except BuildFailed as exc:
        _fail(svc, build["id"], str(exc))
    except ApplianceError as exc:
        log.warning("build %s failed: %s", build["id"], exc)
        _fail(svc, build["id"], str(exc))
    except Exception as exc:  # a bug must not leave the build stuck in its state
        log.error("build %s crashed:\n%s", build["id"], traceback.format_exc())
        _fail(svc, build["id"], f"internal error: {exc.__class__.__name__}: {exc}")


def _fail(svc, build_id: int, reason: str) -> None:
    """The build ends failed, without containers. One whose server already runs (a step
    after it came up failed) keeps it and its state: the error is logged."""
    with svc.db.transaction() as conn:
        current = builds_store.get_build(conn, build_id)
    if current["state"] not in builds_store.ACTIVE_STATES:
        log.error("build %s: %s (after it was %s, which it stays)", build_id, reason,
                  current["state"])
        return
    svc.docker.remove_all(build_id)
    with svc.db.transaction() as conn:
        builds_store.skip_pending_steps(conn, build_id)
        builds_store.set_state(conn, build_id, BuildState.FAILED, result="failure",
                               reason=current["reason"] or reason)


def run_task(svc, task: dict) -> None:
    error = ""
    try:
        if task["kind"] == "backup":
            back_up(svc, task)
        else:
            with svc.db.transaction() as conn:
                build = builds_store.get_build(conn, task["build_id"])
            if task["kind"] == "start_server":
                start_again(svc, build)
            elif task["kind"] == "stop_server":
                containers.stop_server(svc, build, "server stopped by a user")
            elif task["kind"] in editor.TASKS:
                editor.run_task(svc, task)
    except ApplianceError as exc:
        error = str(exc)
    except Exception as exc:  # recorded on the task; the worker carries on
        log.error("task %s crashed:\n%s", task["id"], traceback.format_exc())
        error = f"internal error: {exc}"
    with svc.db.transaction() as conn:
        builds_store.finish_task(conn, task["id"], error)


def back_up(svc, task: dict) -> None:
    """A manual backup of the task's branch ("Back up now"): its row in `backups` follows
    it; a refusal or a failure is also the task's error."""
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, task["project_id"])
        branch = conn.execute("SELECT * FROM branches WHERE id = %s",
                              (task["branch_id"],)).fetchone()
    if branch is None:
        raise ApplianceError("the branch to back up is gone")
    user = {"id": task["user_id"]} if task["user_id"] else None
    backup.create(svc, project, branch, "manual", user)


def start_again(svc, build: dict) -> None:
    """Start a stopped build's server on its kept database (stopped again if it does
    not come up)."""
    if build["state"] != BuildState.STOPPED:
        raise BuildFailed(f"build #{build['id']} is {build['state']}, not stopped")
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
    containers.serve(svc, containers.stored_setup(svc, project, build))
    with svc.db.transaction() as conn:
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
        # Builds and tasks handed to the pools and not yet finished; `_closed` (set by
        # drain) refuses new ones, so drain waits on a complete set.
        self._lock = threading.Lock()
        self._futures: set[Future] = set()
        self._closed = False

    def start(self) -> None:
        self.thread.start()

    def drain(self, timeout: float) -> bool:
        """Claim nothing more and wait up to `timeout` seconds for the running builds and
        tasks to finish. True when they all did (the pools are then shut down); False
        when some still run, which are left to their threads."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.thread.join(timeout=max(0.0, min(DISPATCHER_JOIN_SECONDS, timeout)))
        with self._lock:
            self._closed = True
            running = set(self._futures)
        if running:
            log.info("waiting up to %.0f s for %d running build(s) and task(s)",
                     timeout, len(running))
        _, not_done = wait_futures(running, timeout=max(0.0, deadline - time.monotonic()))
        for pool in (self.builds, self.tasks):
            pool.shutdown(wait=not not_done, cancel_futures=True)
        return not not_done

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
            self._submit(self.builds, self.busy, run_build, build)
        while not self.stopping.is_set() and self.task_slots.acquire(blocking=False):
            with self.svc.db.transaction() as conn:
                task = builds_store.claim_task(conn)
            if task is None:
                self.task_slots.release()
                break
            self._submit(self.tasks, self.task_slots, run_task, task)

    def _submit(self, pool: ThreadPoolExecutor, slot, func, item: dict) -> None:
        with self._lock:
            if self._closed:
                # Claimed in the instant drain began: reconcile deals with it next start.
                log.warning("%s %s claimed while stopping: left to the next start",
                            "build" if func is run_build else "task", item["id"])
                slot.release()
                return
            future = pool.submit(self._guarded, slot, func, item)
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _guarded(self, slot, func, item) -> None:
        try:
            func(self.svc, item)
        finally:
            slot.release()
