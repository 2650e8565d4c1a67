"""The staging build: production's data with the branch's code, safely, top to bottom.

checkout    the pushed revision; its modules
image       the runtime image
database    by the branch's push behaviour:
            "new" (and "refresh from production"): a consistent copy of the live
              production database, taken without stopping production, and a hard-link
              copy of its filestore; the copy gets its own uuid
            "update": the previous staging build's database is taken over
            no production database yet: a fresh one, modules installed without demo data
            a restore or an import (the build has a `source`, jobs/restores.py): the
            backup or the dump loaded into the build's own new database and filestore,
            with its own uuid
neutralize  (copies, restores, imports) `odoo-bin neutralize`: scheduled actions and
            outgoing mail servers off; on a failure the database is never served
mail        the catcher becomes the database's only outgoing mail server (in place of
            neutralize's dummy one, or the previous build's login): the branch's mail
            lands in its Mails tab, from the update on
update      `-u` / `-i` of the modules whose version went up or that are new (update.log);
            then the catcher is made the only server again (new data may add some)
start/health the server answers
No tests, no demo data. Staging databases never expire on their own.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from appliance import layout
from appliance.jobs import common, containers, restores
from appliance.jobs import mail as mail_jobs
from appliance.jobs.plan import make_plan
from appliance.jobs.steps import BuildFailed, StepRecorder
from appliance.runtime import filestore, odoo
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "database", "neutralize", "mail", "update", "start", "health"]


@dataclass(frozen=True)
class Database:
    """The database the build runs on, and how it got it."""

    deploy: str                   # "copy" of production, "update" of the previous one,
                                  # "fresh", or a loaded "restore" or "import"
    name: str
    paths: containers.BuildPaths  # the build's folders (Odoo's data dir taken over too)
    data_dir: str | None = None   # Odoo's data dir when it is not the build's own
    summary: str = ""             # what was loaded (restores and imports)


# The databases that are production's data, made safe by `odoo-bin neutralize`.
NEUTRALIZED = ("copy", "restore", "import")


def run(svc, build: dict) -> None:
    try:
        build_staging(svc, build)
    finally:
        restores.release_source(build)


def build_staging(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
        branch = projects_store.get_branch(conn, project, build["branch"])
        previous = builds_store.latest_build(conn, build["branch_id"],
                                             (BuildState.RUNNING, BuildState.STOPPED))
    steps = StepRecorder(svc.db, build["id"], STEPS)
    paths = containers.prepare_folders(svc, build["id"])

    code = common.code_and_image(svc, project, build, paths, steps)

    reused = previous if reusable(svc, branch, build, previous) else None
    with steps.step("database") as out:
        if build.get("source"):
            database = load_source(svc, project, build, paths)
        else:
            database = choose_database(svc, project, build, reused, paths)
        common.record(svc, build["id"], database=database.name, deploy=database.deploy,
                      data_dir=database.data_dir)
        out["detail"] = database.summary or f"{database.deploy}: {database.name}"
    setup = common.setup(project, build, code, database.name, database.paths)

    try:
        prepare(svc, setup, database.deploy, code, steps)
    except BaseException:
        if database.deploy != "update":  # a half-made copy is never served
            svc.postgres.drop_database(database.name)
        raise
    containers.serve(svc, setup, steps, "success")
    if previous is not None and reused is None:
        containers.stop_server(svc, previous, f"replaced by build #{build['id']}")
    if build.get("source"):
        common.event(svc, build, build["trigger"],
                     f"{database.summary} loaded into {build['branch']}, neutralized: "
                     f"build #{build['id']} running")


def reusable(svc, branch: dict, build: dict, previous: dict | None) -> bool:
    """Does this build take over the previous one's database (push behaviour "update",
    not a refresh from production, a restore or an import, and the database is there)?"""
    return (branch["push_behaviour"] == "update"
            and build["trigger"] not in ("refresh", "restore", "import")
            and previous is not None and bool(previous["database"])
            and svc.postgres.exists(previous["database"]))


def choose_database(svc, project, build, reused: dict | None, paths) -> Database:
    """The previous build's database (`reused`), else a copy of production, else a
    fresh one."""
    if reused is not None:
        return take_over(svc, build, reused)
    name = layout.database_name(svc.config, project["name"], str(build["id"]))
    production_db = layout.production_database(svc.config, project["name"])
    if svc.postgres.exists(production_db):
        copy_production(svc, project, name, paths)
        return Database("copy", name, paths)
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    svc.postgres.create_database(name, project["db_role"], replace=True)
    return Database("fresh", name, paths)


def load_source(svc, project: dict, build: dict, paths) -> Database:
    """The build's backup or dump, checked again (a wrong major version fails the build)
    and loaded into the build's own new database and filestore, with its own identity."""
    loader = restores.loader_for(svc, build)
    loader.check(project["odoo_version"])
    name = layout.database_name(svc.config, project["name"], str(build["id"]))
    # Known before it is made: a restart of the appliance drops a half-loaded one.
    common.record(svc, build["id"], database=name)
    svc.postgres.drop_database(name)
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    folder = paths.data / "filestore"
    containers.make_writable(folder, svc.config.runtime.uid)
    filestore.remove_tree(folder / name)
    loaded = loader.load(svc, name, project["db_role"], folder / name)
    svc.postgres.new_identity(name)  # another database than the one saved
    return Database(build["trigger"], name, paths, summary=loaded.summary)


def prepare(svc, setup: containers.OdooSetup, deploy: str, code: common.Code,
            steps) -> None:
    """The "neutralize", "mail" and "update" steps: the database made safe and brought
    to this revision."""
    if deploy in NEUTRALIZED:
        with steps.step("neutralize") as out:
            neutralize(svc, setup)
            out["detail"] = "crons and outgoing mail servers off"
    else:
        steps.skip("neutralize", "not a copy of production")
    with steps.step("mail") as out:
        out["detail"] = mail_jobs.catch_database_mail(svc, setup.build_id, setup.database)
    common.set_state(svc, setup.build_id, BuildState.INSTALLING)
    with steps.step("update") as out:
        out["detail"] = update(svc, setup, deploy, code)
        # The update's data files may add mail servers; a fresh database has its
        # tables only now.
        mail_jobs.catch_database_mail(svc, setup.build_id, setup.database)


def copy_production(svc, project: dict, name: str, paths) -> None:
    """A consistent copy of the live production database (it keeps running) and a
    hard-link copy of its filestore."""
    production_db = layout.production_database(svc.config, project["name"])
    live_files = layout.production_filestore(svc.config, project["name"])
    common.check_room(svc, production_db, paths.data)
    svc.postgres.drop_database(name)
    svc.postgres.copy_live_database(production_db, name, project["db_role"])
    if live_files.exists():
        target = paths.data / "filestore" / name
        filestore.remove_tree(target)
        filestore.hardlink_copy(live_files, target)
    # A copy is another database: its own identity, as `odoo-bin db duplicate` does.
    svc.postgres.new_identity(name)


def take_over(svc, build: dict, previous: dict) -> Database:
    """The previous staging build's database and data dir become this build's."""
    containers.stop_server(svc, previous, f"its database moved to build #{build['id']}")
    data_dir = previous["data_dir"] or str(
        containers.build_paths(svc.config, previous["id"]).data)
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, previous["id"], BuildState.DONE, database=None)
    return Database("update", previous["database"],
                    containers.prepare_folders(svc, build["id"], data_dir), data_dir)


def neutralize(svc, setup: containers.OdooSetup) -> None:
    command = odoo.server_command(**containers.common_args(svc, setup))
    command.insert(2, "neutralize")
    code = common.run_oneoff(svc, setup, command, "neutralize")
    if code != 0:
        raise BuildFailed(f"neutralize failed (exit code {code}): the copy is dropped and "
                          "never served; see neutralize.log")


def update(svc, setup: containers.OdooSetup, deploy: str, code: common.Code) -> str:
    """Install or update what this revision changes on the database; returns a summary."""
    installed = None if deploy == "fresh" else svc.postgres.module_versions(setup.database)
    plan = make_plan(installed, code.manifests, code.modules, setup.project["odoo_version"])
    if deploy == "fresh":
        plan = dataclasses.replace(plan, deploy="fresh")
    common.record(svc, setup.build_id, plan=plan.as_json())
    if not plan.update and not plan.install:
        return "nothing to update"
    common.run_update(svc, setup, common.update_command(svc, setup, plan))
    return plan.summary
