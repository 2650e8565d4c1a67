"""The development build: what happens to a pushed branch, top to bottom.

checkout   the pushed revision into builds/<id>/src; find its Odoo modules
image      the runtime image (Debian + Odoo's dependencies) plus a layer for the branch's
           requirements.txt / apt.txt, cached by their hash; output in pip.log
database   a fresh database owned by the project's PostgreSQL role
install    the modules with demo data and their tests, in a one-off container (install.log)
classify   read the log: failed tests or errors red, warnings yellow, else green
mail       the catcher becomes the database's only outgoing mail server: what the build
           sends lands in its Mails tab, never with real people
start      the Odoo server on that database, memory and CPU capped, port published
health     /web/health and then /web/login answer: the build is running
"""

from __future__ import annotations

import logging
import re

from appliance import layout
from appliance.jobs import common, containers
from appliance.jobs import mail as mail_jobs
from appliance.jobs.steps import BuildFailed, StepRecorder
from appliance.runtime import odoo
from appliance.store import projects as projects_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "database", "install", "classify", "mail", "start", "health"]
TEST_STARTED = re.compile(r" odoo\.addons\.[\w.]+\.tests\.[\w.]+: Starting ")


def run(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
    steps = StepRecorder(svc.db, build["id"], STEPS)
    paths = containers.prepare_folders(svc, build["id"])

    code = common.code_and_image(svc, project, build, paths, steps)

    with steps.step("database") as out:
        out["detail"] = database = fresh_database(svc, project, build["id"])
    setup = common.setup(project, build, code, database, paths)

    common.set_state(svc, build["id"], BuildState.INSTALLING)
    with steps.step("install") as out:
        exit_code = install(svc, setup, code.modules)
        out["detail"] = f"exit code {exit_code}"

    with steps.step("classify") as out:
        out["detail"] = classify(svc, setup, exit_code)

    with steps.step("mail") as out:
        out["detail"] = mail_jobs.catch_database_mail(svc, build["id"], database)

    containers.serve(svc, setup, steps)
    containers.enforce_server_cap(svc, keep=build["id"])


def installed(exit_code: int, verdict) -> bool:
    """Did the modules install, so that a server can run on the database? `odoo-bin
    --stop-after-init` exits 0 when all is fine and 1 when tests failed (the modules stay
    installed); 255, or 1 without a test summary, means the database did not load."""
    return exit_code == 0 or (exit_code == 1 and verdict.tests_run is not None)


def fresh_database(svc, project: dict, build_id: int) -> str:
    """A new database for the build, owned by the project's role; returns its name."""
    name = layout.database_name(svc.config, project["name"], str(build_id))
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    svc.postgres.create_database(name, project["db_role"], replace=True)
    common.record(svc, build_id, database=name)
    return name


def install(svc, setup: containers.OdooSetup, modules: tuple[str, ...]) -> int:
    """Install with demo data and tests in a one-off container; returns its exit code.
    The build is "testing" from the first line that says a test started."""
    command = odoo.install_command(**containers.common_args(svc, setup),
                                   modules=list(modules), demo=True, test_enable=True,
                                   test_tags=test_tags(setup.project, modules))
    testing = False

    def on_line(line: str) -> None:
        nonlocal testing
        if not testing and TEST_STARTED.search(line):
            testing = True
            common.set_state(svc, setup.build_id, BuildState.TESTING)

    return common.run_oneoff(svc, setup, command, "install", on_line)


def classify(svc, setup: containers.OdooSetup, exit_code: int) -> str:
    """Read install.log: the build's result (green, yellow, red) and why; BuildFailed
    when the modules did not install. Returns the step's detail."""
    verdict = odoo.classify(common.read_log(setup.paths, "install"), exit_code,
                            svc.config.builds.warning_ignore)
    common.record(svc, setup.build_id, result=verdict.result, reason=verdict.reason,
                  failed_tests=[_test_dict(t) for t in verdict.failed_tests],
                  warnings=verdict.warnings[:50])
    if not installed(exit_code, verdict):
        raise BuildFailed(verdict.reason or f"the install exited with code {exit_code}")
    return verdict.reason or verdict.result


def test_tags(project: dict, modules) -> str:
    """The project's test tags, else the branch's own modules only: with --test-enable
    alone, Odoo also runs the tests of every dependency installed on the fresh database
    (base's thousand tests), which is not what a push asks for."""
    return project["test_tags"] or ",".join(f"/{module}" for module in modules)


def _test_dict(test) -> dict:
    return {"module": test.module, "name": test.name, "kind": test.kind,
            "traceback": test.traceback[-8000:]}
