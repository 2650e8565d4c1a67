"""The staging build: production's data with the branch's code, safely, top to bottom.

checkout    the pushed revision; its modules
image       the runtime image
database    by the branch's push behaviour:
            "new" (and "refresh from production"): a consistent copy of the live
              production database, taken without stopping production, and a hard-link
              copy of its filestore; the copy gets its own uuid
            "update": the previous staging build's database is taken over
            no production database yet: a fresh one, modules installed without demo data
neutralize  (copies) `odoo-bin neutralize`: scheduled actions and outgoing mail servers
            off; on a failure the database is never served
mail        the catcher becomes the database's only outgoing mail server (in place of
            neutralize's dummy one, or the previous build's login): the branch's mail
            lands in its Mails tab, from the update on
update      `-u` / `-i` of the modules whose version went up or that are new (update.log);
            then the catcher is made the only server again (new data may add some)
start/health the server answers
No tests, no demo data. Staging databases never expire on their own.
"""

from __future__ import annotations

import logging

from appliance import layout
from appliance.jobs import common, containers, production
from appliance.jobs import mail as mail_jobs
from appliance.jobs.steps import BuildFailed, StepRecorder
from appliance.runtime import filestore, odoo
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "database", "neutralize", "mail", "update", "start", "health"]


def run(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
        branch = conn.execute("SELECT * FROM branches WHERE id = %s",
                              (build["branch_id"],)).fetchone()
        previous = builds_store.latest_build(conn, build["branch_id"], ("running", "stopped"))
    steps = StepRecorder(svc.db, build["id"], STEPS)
    paths = containers.prepare_folders(svc, build["id"])

    modules, _ = common.code_and_image(svc, project, build, paths, steps)

    production_db = layout.database_name(svc.config, project["name"], "production")
    reuse = (branch["push_behaviour"] == "update" and build["trigger"] != "refresh"
             and previous is not None and previous["database"]
             and svc.postgres.exists(previous["database"]))
    with steps.step("database") as out:
        if reuse:
            paths = take_over(svc, build, previous)
            build["deploy"] = "update"
        elif svc.postgres.exists(production_db):
            copy_production(svc, project, build, production_db, paths)
            build["deploy"] = "copy"
        else:
            build["database"] = layout.database_name(svc.config, project["name"], build["id"])
            svc.postgres.ensure_role(project["db_role"], project["db_password"])
            svc.postgres.create_database(build["database"], project["db_role"], replace=True)
            build["deploy"] = "fresh"
        common.update(svc, build, database=build["database"], deploy=build["deploy"],
                      data_dir=build.get("data_dir"))
        out["detail"] = f"{build['deploy']}: {build['database']}"

    try:
        if build["deploy"] == "copy":
            with steps.step("neutralize") as out:
                neutralize(svc, project, build, paths)
                out["detail"] = "crons and outgoing mail servers off"
        else:
            steps.skip("neutralize", "not a copy of production")
        with steps.step("mail") as out:
            out["detail"] = mail_jobs.catch_database_mail(svc, build)
        common.set_state(svc, build, "installing")
        with steps.step("update") as out:
            out["detail"] = update(svc, project, build, modules, paths)
            # The update's data files may add mail servers; a fresh database has its
            # tables only now.
            mail_jobs.catch_database_mail(svc, build)
    except BaseException:
        if build["deploy"] != "update":  # a half-made copy is never served
            svc.postgres.drop_database(build["database"])
        raise
    common.serve(svc, project, build, steps, "success")
    if previous is not None and not reuse:
        containers.stop_server(svc, previous, f"replaced by build #{build['id']}")


def copy_production(svc, project, build, production_db, paths) -> None:
    build["database"] = layout.database_name(svc.config, project["name"], build["id"])
    live_files = (layout.production_data_dir(svc.config, project["name"]) / "filestore"
                  / production_db)
    size = svc.postgres.database_size(production_db)
    filestore.check_free_space(paths.data, 2 * size + production.SNAPSHOT_MARGIN_BYTES)
    svc.postgres.drop_database(build["database"])
    svc.postgres.copy_live_database(production_db, build["database"], project["db_role"])
    if live_files.exists():
        target = paths.data / "filestore" / build["database"]
        filestore.remove_tree(target)
        filestore.hardlink_copy(live_files, target)
    # A copy is another database: its own identity, as `odoo-bin db duplicate` does.
    svc.postgres.new_identity(build["database"])


def take_over(svc, build, previous):
    """The previous staging build's database and data dir become this build's."""
    containers.stop_server(svc, previous, f"its database moved to build #{build['id']}")
    build["database"] = previous["database"]
    build["data_dir"] = previous["data_dir"] or str(
        containers.build_paths(svc.config, previous["id"]).data)
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, previous["id"], "done", database=None)
    return containers.prepare_folders(svc, build["id"], build["data_dir"])


def neutralize(svc, project, build, paths) -> None:
    args = containers.common_args(svc, project, build, containers.addon_dirs(build))
    command = odoo.server_command(**args)
    command.insert(2, "neutralize")
    code = common.run_oneoff(svc, project, build, command, "neutralize", paths, "neutralize")
    if code != 0:
        raise BuildFailed(f"neutralize failed (exit code {code}): the copy is dropped and "
                          "never served; see neutralize.log")


def update(svc, project, build, modules, paths) -> str:
    """Install or update what this revision changes on the database; returns a summary."""
    if build["deploy"] == "fresh":
        plan = {"deploy": "fresh", "update": {}, "install": modules,
                "summary": "no production database yet: install without demo data"}
    else:
        plan = production.make_plan(svc, project, build, paths)
    common.update(svc, build, plan=plan)
    if not plan["update"] and not plan["install"]:
        return "nothing to update"
    command = production.update_command(svc, project, build, plan)
    code = common.run_oneoff(svc, project, build, command, "update", paths, "update")
    verdict = odoo.classify(common.read_log(paths, "update"), code,
                            svc.config.builds.warning_ignore)
    if code != 0 or verdict.result == "failure":
        raise BuildFailed(f"the update failed: {verdict.reason or f'exit code {code}'} "
                          "(see update.log)")
    return plan["summary"]
