"""Start-up reconciliation: make the store and Docker agree after a stop or a crash.

- A build a worker was running when the daemon died is started over once (its containers
  and database removed first); interrupted a second time, it fails with the reason.
- A running build whose server container is gone is marked stopped (database kept).
- A sleeping build keeps its server container, stopped (a visit starts it again); one
  found running is stopped.
- A labelled container of this appliance that no build claims is removed.
- Tasks cut short are queued again; databases left invalid by an interrupted drop go.
Safe to run at any time when no worker is running.
"""

from __future__ import annotations

import logging

from appliance import layout
from appliance.jobs import containers, production_restore, restores, sleep, snapshot
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

# A build interrupted this many times by restarts fails instead of starting over.
MAX_ATTEMPTS = 2


def reconcile(svc) -> dict:
    report = {"requeued": [], "failed": [], "stopped": [], "removed": [], "dropped": []}
    with svc.db.transaction() as conn:
        in_flight = builds_store.in_flight(conn)
    for build in in_flight:
        _reset_interrupted(svc, build, report)
    _check_running(svc, report)
    _remove_orphans(svc, report)
    with svc.db.transaction() as conn:
        builds_store.requeue_running_tasks(conn)
    report["dropped"] = svc.postgres.drop_invalid_databases(svc.config.database.db_prefix)
    if any(report.values()):
        log.info("reconciled: %s", {k: v for k, v in report.items() if v})
    return report


def _reset_interrupted(svc, build: dict, report: dict) -> None:
    svc.docker.remove_all(build["id"])
    if build["stage"] == "production":
        _recover_production(svc, build, report)
        return
    if build["database"] and build["deploy"] != "update":  # never a database taken over
        svc.postgres.drop_database(build["database"])
    with svc.db.transaction() as conn:
        if build["attempts"] >= MAX_ATTEMPTS:
            builds_store.skip_pending_steps(conn, build["id"])
            builds_store.set_state(
                conn, build["id"], BuildState.FAILED, result="failure",
                reason=f"interrupted {build['attempts']} times by a restart of the appliance "
                       f"(last during {build['state']})")
            report["failed"].append(build["id"])
            return
        builds_store.set_state(conn, build["id"], BuildState.QUEUED, database=None,
                               result=None, reason="", failed_tests=[], warnings=[])
        builds_store.add_event(conn, project_id=build["project_id"], branch_id=build["branch_id"],
                               build_id=build["id"], kind="build_restarted",
                               message=f"build #{build['id']} started over: the appliance "
                                       f"restarted during {build['state']}")
        report["requeued"].append(build["id"])


def _check_running(svc, report: dict) -> None:
    with svc.db.transaction() as conn:
        running = builds_store.running_servers(conn)
    for build in running:
        servers = [c for c in svc.docker.find(build_id=build["id"], role="server")
                   if c.status == "running"]
        if servers:
            if servers[0].host_port and servers[0].host_port != build["host_port"]:
                with svc.db.transaction() as conn:
                    builds_store.update(conn, build["id"], host_port=servers[0].host_port)
            continue
        svc.docker.remove_all(build["id"], "server")
        with svc.db.transaction() as conn:
            builds_store.set_state(conn, build["id"], BuildState.STOPPED, host_port=None)
        report["stopped"].append(build["id"])


def _remove_orphans(svc, report: dict) -> None:
    with svc.db.transaction() as conn:
        wanted = builds_store.ids_with_server(conn)
        sleeping = sleep.sleeping_ids(conn)
    for info in svc.docker.find():
        if info.build_id in wanted and info.role == "server":
            continue
        if info.build_id in sleeping and info.role == "server":
            if info.running:  # asleep is stopped: it starts at the next visit
                log.info("stopping container %s of sleeping build %s", info.name,
                         info.build_id)
                svc.docker.stop(info.id, timeout=containers.STOP_GRACE_SECONDS)
            continue
        log.info("removing container %s (build %s, %s)", info.name, info.build_id, info.role)
        svc.docker.remove(info.id)
        report["removed"].append(info.name)


def _recover_production(svc, build: dict, report: dict) -> None:
    """A production deploy cut short is not started over: its snapshot (if the snapshot
    step finished) is put back, the build fails, and the last good revision is started
    again. A restore or an import cut short also leaves no side database or folder, and
    none of its data in a production that had no database before it."""
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
        steps = {step["name"]: step["state"] for step in builds_store.steps(conn, build["id"])}
    taken = steps.get("snapshot") == "done"
    snap = layout.production_snapshot(svc.config, project["name"], build["id"])
    if build["deploy"] == "first":  # nothing was live yet: no half-installed production
        svc.postgres.drop_database(snap.live_database)
    if taken:  # the update may have begun: production as it was before
        snapshot.restore(svc, snap, build, "the appliance restarted during the deploy")
    else:  # cut short before the update: production untouched, a half-made copy goes
        snapshot.discard(svc, snap)
    if build.get("source"):
        _undo_restore(svc, project, build, snap, steps, taken)
    with svc.db.transaction() as conn:
        builds_store.skip_pending_steps(conn, build["id"])
        builds_store.set_state(conn, build["id"], BuildState.FAILED, result="failure",
                               reason=f"interrupted by a restart of the appliance during "
                                      f"{build['state']}; production was restored")
        last_good = builds_store.last_stopped_before(conn, build["branch_id"], build["id"])
        if last_good is not None:
            builds_store.request_task(conn, "start_server", last_good["id"])
    report["failed"].append(build["id"])


def _undo_restore(svc, project: dict, build: dict, snap, steps: dict, taken: bool) -> None:
    """What a restore or an import cut short leaves goes: its side database and folder,
    the uploaded file it was to remove, and, when production had no database before it
    (its safety backup skipped) and the swap began, the half-restored live database and
    filestore, as a failed first deploy leaves none."""
    production_restore.discard_side(svc, production_restore.side(svc.config, project,
                                                                 build["id"]))
    restores.release_source(build)
    had_none = steps.get("backup") == "skipped"
    if had_none and not taken and steps.get("swap") in ("running", "done", "failed"):
        production_restore.undo_first(svc, snap)
