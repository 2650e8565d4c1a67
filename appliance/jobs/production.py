"""The production build: a push to the production branch, top to bottom.

checkout     the pushed revision; its modules
image        the runtime image (rebuilt when requirements.txt or apt.txt changed)
plan         compare each module's manifest version with the version installed in the
             database: nothing went up -> "fast" deploy (restart on the new code); a
             version went up or a module is new -> "full" deploy; no database yet ->
             "first" deploy (install without demo data); see jobs/plan.py. The plan is
             shown on the page.
maintenance  (full) the server is stopped
snapshot     (full) the database copied with CREATE DATABASE ... TEMPLATE (the server is
             stopped, so the copy is quick and exact) and the filestore as hard links
backup       (full) an "update" backup of the data as it is before the update, made while
             the server is stopped (so it is exactly what the update starts from); it is
             mandatory, as on Odoo.sh: when it fails, nothing was changed and the previous
             revision serves again. It lengthens the maintenance window by the backup's
             time (pg_dump of the database, the filestore's new files).
update       (full) `-u` / `-i` of the planned modules, output in update.log
             (first: `-i` of every module without demo data)
start/health the server on the new revision answers
If anything fails after maintenance began, the snapshot is put back (database and
filestore), the previous revision's server starts again, and the build is red with the
reason; update.log stays. No demo data, no tests.

A restore of a backup or an import of a dump is a build of this branch too (its `source`
says what is loaded): restore_deploy, with the steps of jobs/production_restore.py.
The whole run holds the project's lock: a backup waits for a deploy, and a deploy for a
backup.
"""

from __future__ import annotations

import logging

from appliance import layout
from appliance.errors import ApplianceError
from appliance.jobs import backup, common, containers, production_restore, restores, snapshot
from appliance.jobs.locks import project_lock
from appliance.jobs.plan import Plan, make_plan
from appliance.jobs.steps import StepRecorder
from appliance.runtime import filestore
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "plan", "maintenance", "snapshot", "backup", "update", "start",
         "health"]


def run(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
    with project_lock(svc, project["id"], f"deploy of build #{build['id']}"):
        try:
            deploy(svc, project, build)
        finally:
            restores.release_source(build)


def deploy(svc, project: dict, build: dict) -> None:
    with svc.db.transaction() as conn:
        previous = builds_store.latest_build(conn, build["branch_id"], (BuildState.RUNNING,))
    snap = layout.production_snapshot(svc.config, project["name"], build["id"])
    common.record(svc, build["id"], database=snap.live_database, data_dir=str(snap.data_dir))
    restoring = bool(build.get("source"))
    steps = StepRecorder(svc.db, build["id"],
                         production_restore.STEPS if restoring else STEPS)
    paths = containers.prepare_folders(svc, build["id"], str(snap.data_dir))

    code = common.code_and_image(svc, project, build, paths, steps)
    setup = common.setup(project, build, code, snap.live_database, paths)
    if restoring:
        message = restore_deploy(svc, setup, build, previous, code, snap, steps)
        _retire(svc, previous)
        common.event(svc, build, build["trigger"], message)
        return

    with steps.step("plan") as out:
        plan = plan_deploy(svc, setup, code, build.get("update_modules") or ())
        out["detail"] = plan.summary
        common.record(svc, build["id"], deploy=plan.deploy, plan=plan.as_json())
        common.event(svc, build, "update_plan", f"{plan.deploy} deploy: {plan.summary}",
                     plan.as_json())

    if plan.deploy == "first":
        first_deploy(svc, setup, plan, steps)
    elif plan.deploy == "fast":
        fast_deploy(svc, setup, build, previous, steps)
    else:
        full_deploy(svc, setup, build, previous, plan, snap, steps)
    _retire(svc, previous)
    common.event(svc, build, "deploy", f"{plan.deploy} deploy of {build['commit'][:8]} live")


def _retire(svc, previous: dict | None) -> None:
    """The previous build's server was replaced: it is done."""
    if previous is not None:
        with svc.db.transaction() as conn:
            builds_store.set_state(conn, previous["id"], BuildState.DONE, host_port=None)


def plan_deploy(svc, setup: containers.OdooSetup, code: common.Code,
                force=()) -> Plan:
    """Compare the versions installed in production with the revision's manifests;
    `force`: modules to update anyway (odoo-update from a production terminal)."""
    installed = (svc.postgres.module_versions(setup.database)
                 if svc.postgres.exists(setup.database) else None)
    return make_plan(installed, code.manifests, code.modules, setup.project["odoo_version"],
                     force)


def first_deploy(svc, setup: containers.OdooSetup, plan: Plan, steps) -> None:
    steps.skip("maintenance", "nothing runs yet")
    steps.skip("snapshot", "no database yet")
    steps.skip("backup", "no database yet")
    project = setup.project
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    svc.postgres.create_database(setup.database, project["db_role"])
    common.set_state(svc, setup.build_id, BuildState.INSTALLING)
    try:
        with steps.step("update") as out:
            out["detail"] = common.run_update(svc, setup,
                                              common.update_command(svc, setup, plan))
        containers.serve(svc, setup, steps, "success")
    except BaseException:
        # Nothing was live yet: leave no half-installed production behind.
        svc.postgres.drop_database(setup.database)
        filestore.remove_tree(layout.production_filestore(svc.config, project["name"]))
        raise


def fast_deploy(svc, setup: containers.OdooSetup, build: dict, previous, steps) -> None:
    for name in ("maintenance", "snapshot", "backup", "update"):
        steps.skip(name, "fast deploy: code only")
    _stop_previous(svc, previous, build)
    try:
        containers.serve(svc, setup, steps, "success")
    except BaseException:
        _serve_previous_again(svc, setup.project, previous, build)
        raise


def full_deploy(svc, setup: containers.OdooSetup, build: dict, previous, plan: Plan,
                snap: layout.ProductionSnapshot, steps) -> None:
    with steps.step("maintenance") as out:
        _stop_previous(svc, previous, build)
        out["detail"] = "server stopped"
    updating = False
    try:
        with steps.step("snapshot") as out:
            out["detail"] = snapshot.take(svc, setup.project, snap)
        with steps.step("backup") as out:
            out["detail"] = update_backup(svc, setup.project)
        updating = True  # from here on, production may change
        common.set_state(svc, setup.build_id, BuildState.INSTALLING)
        with steps.step("update") as out:
            out["detail"] = common.run_update(svc, setup,
                                              common.update_command(svc, setup, plan))
        containers.serve(svc, setup, steps, "success")
    except BaseException as exc:
        if updating:
            snapshot.restore(svc, snap, build, f"update failed ({exc})")
        else:  # production was not touched (the update backup may have failed): the
            # snapshot, if any, goes
            snapshot.discard(svc, snap)
        _serve_previous_again(svc, setup.project, previous, build)
        raise
    snapshot.discard(svc, snap)


def update_backup(svc, project: dict) -> str:
    """The "update" backup: production's data as the update will find it."""
    row = backup.create(svc, project, None, "update")
    return (f"update backup #{row['id']}: {(row['dump_bytes'] or 0) // 2**20} MB dump, "
            f"{(row['bytes_added'] or 0) // 2**20} MB added, {row['seconds'] or 0:.1f} s")


def restore_deploy(svc, setup: containers.OdooSetup, build: dict, previous, code,
                   snap: layout.ProductionSnapshot, steps) -> str:
    """Load the build's source beside production, then swap it in as a full deploy
    updates: snapshot first, rolled back on any failure. Returns what the history says."""
    project = setup.project
    side = production_restore.side(svc.config, project, build["id"])
    had_database = svc.postgres.exists(snap.live_database)
    try:
        if had_database:
            with steps.step("backup") as out:
                out["detail"] = production_restore.safety_backup(svc, project)
        else:
            steps.skip("backup", "no production database yet")
        with steps.step("load") as out:
            out["detail"] = production_restore.load(svc, project, build, side).summary
        with steps.step("plan") as out:
            plan = production_restore.plan(svc, setup, code, side.database)
            out["detail"] = plan.summary
            common.record(svc, build["id"], deploy=build["trigger"], plan=plan.as_json())
        with steps.step("maintenance") as out:
            _stop_previous(svc, previous, build)
            out["detail"] = "server stopped"
        _swap_and_update(svc, setup, build, previous, plan, snap, side, had_database, steps)
    finally:
        production_restore.discard_side(svc, side)
    return f"{_what(build)} into production: build #{build['id']} live"


def _swap_and_update(svc, setup, build, previous, plan: Plan, snap, side, had_database: bool,
                     steps) -> None:
    taken = swapped = False
    try:
        if had_database:
            with steps.step("snapshot") as out:
                out["detail"] = snapshot.take(svc, setup.project, snap)
            taken = True
        else:
            steps.skip("snapshot", "no production database yet")
        with steps.step("swap") as out:
            out["detail"] = production_restore.swap(svc, snap, side)
            swapped = True
            if build["trigger"] == "import":
                out["detail"] += "; " + production_restore.after_import(
                    svc, build, snap.live_database)
        common.set_state(svc, setup.build_id, BuildState.INSTALLING)
        with steps.step("update") as out:
            out["detail"] = (common.run_update(svc, setup, common.update_command(svc, setup, plan))
                             if plan.update or plan.install else "nothing to update")
        containers.serve(svc, setup, steps, "success")
    except BaseException as exc:
        if taken:
            snapshot.restore(svc, snap, build, f"{build['trigger']} failed ({exc})")
        else:
            snapshot.discard(svc, snap)
            if swapped:
                production_restore.undo_first(svc, snap)
        _serve_previous_again(svc, setup.project, previous, build)
        raise
    snapshot.discard(svc, snap)


def _what(build: dict) -> str:
    source = build.get("source") or {}
    if "backup" in source:
        return f"restore of backup #{source['backup']}"
    return f"import of {source.get('name', 'a file')}"


def _stop_previous(svc, previous: dict | None, build: dict) -> None:
    if previous is not None:
        containers.stop_server(svc, previous, f"stopped for the deploy of build #{build['id']}")


def _serve_previous_again(svc, project: dict, previous: dict | None, build: dict) -> None:
    """The last good revision serves again after a failed deploy (a failure to start it
    is noted, and the deploy's own error is the one raised)."""
    if previous is None:
        return
    with svc.db.transaction() as conn:
        previous = builds_store.get_build(conn, previous["id"])
    try:
        containers.serve(svc, containers.stored_setup(svc, project, previous))
    except ApplianceError as exc:
        log.error("build %s: the previous build #%s did not start again: %s", build["id"],
                  previous["id"], exc)
        common.event(svc, build, "rollback", f"build #{previous['id']} could not start "
                                             f"again: {exc}")
        return
    common.event(svc, build, "rollback", f"build #{previous['id']} "
                                         f"({previous['commit'][:8]}) serves again")
