"""The production build: a push to the production branch, top to bottom.

checkout     the pushed revision; its modules
image        the runtime image (rebuilt when requirements.txt or apt.txt changed)
plan         compare each module's manifest version with the version installed in the
             database: nothing went up -> "fast" deploy (restart on the new code); a
             version went up or a module is new -> "full" deploy; no database yet ->
             "first" deploy (install without demo data). The plan is shown on the page.
maintenance  (full) the server is stopped
snapshot     (full) the database copied with CREATE DATABASE ... TEMPLATE (the server is
             stopped, so the copy is quick and exact) and the filestore as hard links
update       (full) `-u` / `-i` of the planned modules, output in update.log
             (first: `-i` of every module without demo data)
start/health the server on the new revision answers
If anything fails after maintenance began, the snapshot is put back (database and
filestore), the previous revision's server starts again, and the build is red with the
reason; update.log stays. No demo data, no tests.
"""

from __future__ import annotations

import logging

from appliance import layout
from appliance.jobs import common, containers
from appliance.jobs.steps import BuildFailed, StepRecorder
from appliance.runtime import filestore, odoo
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "plan", "maintenance", "snapshot", "update", "start", "health"]
# Room needed for a snapshot besides twice the database: WAL, temporary files.
SNAPSHOT_MARGIN_BYTES = 512 * 1024 * 1024


def run(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
        previous = builds_store.latest_build(conn, build["branch_id"], ("running",))
    build["database"] = layout.database_name(svc.config, project["name"], "production")
    build["data_dir"] = str(layout.production_data_dir(svc.config, project["name"]))
    common.update(svc, build, database=build["database"], data_dir=build["data_dir"])
    steps = StepRecorder(svc.db, build["id"], STEPS)
    paths = containers.prepare_folders(svc, build["id"], build["data_dir"])

    modules, _ = common.code_and_image(svc, project, build, paths, steps)

    with steps.step("plan") as out:
        plan = make_plan(svc, project, build, paths)
        out["detail"] = plan["summary"]
        common.update(svc, build, deploy=plan["deploy"], plan=plan)
        _event(svc, build, "update_plan", f"{plan['deploy']} deploy: {plan['summary']}", plan)

    if plan["deploy"] == "first":
        first_deploy(svc, project, build, modules, paths, steps)
    elif plan["deploy"] == "fast":
        fast_deploy(svc, project, build, previous, steps)
    else:
        full_deploy(svc, project, build, previous, plan, paths, steps)
    if previous is not None:
        with svc.db.transaction() as conn:
            builds_store.set_state(conn, previous["id"], "done", host_port=None)
    _event(svc, build, "deploy", f"{plan['deploy']} deploy of {build['commit'][:8]} live")


def make_plan(svc, project: dict, build: dict, paths) -> dict:
    """What the deploy does, and why: {"deploy", "update": {m: [old, new]}, "install",
    "summary"}."""
    if not svc.postgres.exists(build["database"]):
        return {"deploy": "first", "update": {}, "install": build_modules(build),
                "summary": "no production database yet: install without demo data"}
    installed = svc.postgres.module_versions(build["database"])
    update, install = {}, []
    for manifest in odoo.find_modules(paths.src):
        if manifest.name not in build_modules(build):
            continue
        new = odoo.full_version(manifest.version, project["odoo_version"])
        old = installed.get(manifest.name)
        if old is None:
            install.append(manifest.name)
        elif version_key(new) > version_key(old):
            update[manifest.name] = [old, new]
    parts = [f"update {m} {v[0]} -> {v[1]}" for m, v in sorted(update.items())]
    parts += [f"install {m} (new)" for m in install]
    if not parts:
        return {"deploy": "fast", "update": {}, "install": [],
                "summary": "no module version went up: restart on the new code, no -u"}
    return {"deploy": "full", "update": update, "install": install, "summary": "; ".join(parts)}


def build_modules(build: dict) -> list[str]:
    return [m for m in build["modules"].split(",") if m]


def version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def first_deploy(svc, project, build, modules, paths, steps) -> None:
    steps.skip("maintenance", "nothing runs yet")
    steps.skip("snapshot", "no database yet")
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    svc.postgres.create_database(build["database"], project["db_role"])
    common.set_state(svc, build, "installing")
    try:
        with steps.step("update") as out:
            command = odoo.install_command(
                **containers.common_args(svc, project, build, containers.addon_dirs(build)),
                modules=modules, demo=False, test_enable=False)
            _check_update(svc, project, build, command, paths, out)
        common.serve(svc, project, build, steps, "success")
    except BaseException:
        # Nothing was live yet: leave no half-installed production behind.
        _stop_own_server(svc, build)
        svc.postgres.drop_database(build["database"])
        filestore.remove_tree(paths.data / "filestore" / build["database"])
        raise


def fast_deploy(svc, project, build, previous, steps) -> None:
    for name in ("maintenance", "snapshot", "update"):
        steps.skip(name, "fast deploy: code only")
    _stop_previous(svc, previous)
    try:
        common.serve(svc, project, build, steps, "success")
    except BaseException:
        _stop_own_server(svc, build)
        _restart_previous(svc, project, previous, build)
        raise


def full_deploy(svc, project, build, previous, plan, paths, steps) -> None:
    snapshot = layout.database_name(svc.config, project["name"], f"snap_{build['id']}")
    live_files = paths.data / "filestore" / build["database"]
    saved_files = paths.data / "snapshots" / str(build["id"])
    with steps.step("maintenance") as out:
        _stop_previous(svc, previous)
        out["detail"] = "server stopped"
    try:
        with steps.step("snapshot") as out:
            size = svc.postgres.database_size(build["database"])
            filestore.check_free_space(paths.data, 2 * size + SNAPSHOT_MARGIN_BYTES)
            svc.postgres.clone_database(build["database"], snapshot, project["db_role"])
            files = (filestore.hardlink_copy(live_files, saved_files)
                     if live_files.exists() else 0)
            out["detail"] = f"{snapshot} ({size // (1024 * 1024)} MB), {files} file(s)"
        common.set_state(svc, build, "installing")
        with steps.step("update") as out:
            _check_update(svc, project, build, update_command(svc, project, build, plan),
                          paths, out)
        common.serve(svc, project, build, steps, "success")
    except BaseException as exc:
        _stop_own_server(svc, build)
        rollback(svc, build, snapshot, saved_files, live_files, exc)
        _restart_previous(svc, project, previous, build)
        raise
    svc.postgres.drop_database(snapshot)
    filestore.remove_tree(saved_files)


def update_command(svc, project, build, plan) -> list[str]:
    """`-u` of the modules whose version went up, `-i` of the new ones, in one run."""
    server = containers.common_args(svc, project, build, containers.addon_dirs(build))
    if not plan["update"]:
        return odoo.install_command(**server, modules=plan["install"], demo=False,
                                    test_enable=False)
    extra = ["-i", ",".join(plan["install"])] if plan["install"] else []
    return odoo.update_command(**server, modules=sorted(plan["update"]), test_enable=False,
                               extra=extra)


def rollback(svc, build, snapshot, saved_files, live_files, exc) -> None:
    """Put the snapshot back in place of the production database and filestore."""
    if not svc.postgres.exists(snapshot):
        return  # failed before the snapshot: nothing was changed
    log.warning("build %s: rolling back production (%s)", build["id"], exc)
    svc.postgres.drop_database(build["database"])
    svc.postgres.rename_database(snapshot, build["database"])
    if saved_files.exists():
        filestore.replace_tree(saved_files, live_files)
    _event(svc, build, "rollback", f"update failed ({exc}): database and filestore restored "
                                   "from the snapshot")


def _check_update(svc, project, build, command, paths, out) -> None:
    code = common.run_oneoff(svc, project, build, command, "update", paths, "update")
    verdict = odoo.classify(common.read_log(paths, "update"), code,
                            svc.config.builds.warning_ignore)
    out["detail"] = f"exit code {code}" + (f": {verdict.reason}" if verdict.reason else "")
    if code != 0 or verdict.result == "failure":
        raise BuildFailed(f"the update failed: {verdict.reason or f'exit code {code}'} "
                          "(see update.log)")


def _stop_previous(svc, previous) -> None:
    if previous is None:
        return
    for info in svc.docker.find(build_id=previous["id"], role="server"):
        svc.docker.stop(info.id)
        svc.docker.remove(info.id)
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, previous["id"], "stopped", host_port=None)


def _stop_own_server(svc, build) -> None:
    for info in svc.docker.find(build_id=build["id"], role="server"):
        svc.docker.remove(info.id)


def _restart_previous(svc, project, previous, build) -> None:
    """The last good revision serves again after a failed deploy."""
    if previous is None:
        return
    with svc.db.transaction() as conn:
        previous = builds_store.get_build(conn, previous["id"])
    port = containers.start_server(svc, project, previous)
    containers.server_ready(svc, previous["id"], port)
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, previous["id"], "running", host_port=port)
    _event(svc, build, "rollback", f"build #{previous['id']} ({previous['commit'][:8]}) "
                                   "serves again")


def _event(svc, build, kind, message, data=None) -> None:
    with svc.db.transaction() as conn:
        builds_store.add_event(conn, project_id=build["project_id"],
                               branch_id=build["branch_id"], build_id=build["id"], kind=kind,
                               message=message, data=data)
