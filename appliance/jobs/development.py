"""The development build: what happens to a pushed branch, top to bottom.

checkout   the pushed revision into builds/<id>/src; find its Odoo modules
image      the runtime image (Debian + Odoo's dependencies) plus a layer for the branch's
           requirements.txt / apt.txt, cached by their hash; output in pip.log
database   a fresh database owned by the project's PostgreSQL role
install    the modules with demo data and their tests, in a one-off container (install.log)
classify   read the log: failed tests or errors red, warnings yellow, else green
start      the Odoo server on that database, memory and CPU capped, port published
health     /web/health and then /web/login answer: the build is running
"""

from __future__ import annotations

import logging
import re
import shutil
import threading

from appliance.jobs import containers
from appliance.jobs.steps import BuildFailed, StepRecorder
from appliance.runtime import git, images, odoo
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "database", "install", "classify", "start", "health"]
# How often the install's log is looked at to tell "testing" from "installing".
PROGRESS_POLL_SECONDS = 0.5
TEST_STARTED = re.compile(r" odoo\.addons\.[\w.]+\.tests\.[\w.]+: Starting ")


def run(svc, build: dict) -> None:
    with svc.db.transaction() as conn:
        project = projects_store.project_by_id(conn, build["project_id"])
    steps = StepRecorder(svc.db, build["id"], STEPS)
    paths = containers.prepare_folders(svc, build["id"])

    with steps.step("checkout") as out:
        modules, dirs = checkout(svc, project, build, paths)
        out["detail"] = f"{len(modules)} module(s): {', '.join(modules)}"
        _update(svc, build, modules=",".join(modules), addons_dirs=",".join(dirs))

    with steps.step("image") as out:
        build["image"] = image(svc, build, paths)
        out["detail"] = build["image"]
        _update(svc, build, image=build["image"])

    with steps.step("database") as out:
        build["database"] = database(svc, project, build)
        out["detail"] = build["database"]

    _state(svc, build, "installing")
    with steps.step("install") as out:
        exit_code = install(svc, project, build, modules, dirs, paths)
        out["detail"] = f"exit code {exit_code}"

    with steps.step("classify") as out:
        verdict = odoo.classify(_read(paths.logs / "install.log"), exit_code,
                                svc.config.builds.warning_ignore)
        out["detail"] = verdict.reason or verdict.result
        _update(svc, build, result=verdict.result, reason=verdict.reason,
                failed_tests=[_test_dict(t) for t in verdict.failed_tests],
                warnings=verdict.warnings[:50])
        if not installed(exit_code, verdict):
            raise BuildFailed(verdict.reason or f"the install exited with code {exit_code}")

    _state(svc, build, "starting")
    with steps.step("start") as out:
        build["host_port"] = containers.start_server(svc, project, build)
        out["detail"] = f"port {build['host_port']}"

    with steps.step("health") as out:
        info = svc.docker.find(build_id=build["id"], role="server")
        seconds = containers.wait_ready(containers.health_host(svc), build["host_port"],
                                        svc.config.builds.health_timeout,
                                        info[0].id if info else None, svc.docker)
        out["detail"] = f"ready after {seconds:.1f} s"

    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], "running", host_port=build["host_port"])
    containers.enforce_server_cap(svc, keep=build["id"])


def installed(exit_code: int, verdict) -> bool:
    """Did the modules install, so that a server can run on the database? `odoo-bin
    --stop-after-init` exits 0 when all is fine and 1 when tests failed (the modules stay
    installed); 255, or 1 without a test summary, means the database did not load."""
    return exit_code == 0 or (exit_code == 1 and verdict.tests_run is not None)


def checkout(svc, project: dict, build: dict, paths) -> tuple[list[str], list[str]]:
    """Write the revision's files; return the modules to install and their folders."""
    repo = svc.config.paths.repos / f"{project['name']}.git"
    if paths.src.exists():
        shutil.rmtree(paths.src)
    git.export_tree(repo, build["commit"], paths.src)
    found = odoo.find_modules(paths.src)
    if not found:
        raise BuildFailed("no Odoo module found in this branch (no folder with a "
                          "__manifest__.py)")
    wanted = [m.strip() for m in project["modules"].split(",") if m.strip()]
    names = wanted or [m.name for m in found]
    return names, odoo.addons_dirs(paths.src, found)


def image(svc, build: dict, paths) -> str:
    pip_log = paths.logs / "pip.log"
    cfg = svc.config.runtime
    runtime = images.runtime_image(svc.docker, cfg, pip_log)
    repo = svc.config.paths.repos / f"{build['project']}.git"
    requirements = git.read_file(repo, build["commit"], "requirements.txt")
    apt = git.read_file(repo, build["commit"], "apt.txt")
    result = images.project_image(svc.docker, cfg, runtime.tag, requirements, apt, pip_log)
    if result.cached:
        with open(pip_log, "a", encoding="utf-8") as handle:
            what = ("no requirements.txt or apt.txt: the runtime image"
                    if requirements is None and apt is None else "cached, built before")
            handle.write(f"image {result.tag}: {what}\n")
    return result.tag


def database(svc, project: dict, build: dict) -> str:
    name = f"{svc.config.database.db_prefix}{project['name'].replace('-', '_')}_{build['id']}"
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    svc.postgres.create_database(name, project["db_role"], replace=True)
    _update(svc, build, database=name)
    return name


def install(svc, project: dict, build: dict, modules: list[str], dirs: list[str],
            paths) -> int:
    """Install with demo data and tests in a one-off container; returns its exit code."""
    command = odoo.install_command(**containers.common_args(svc, project, build, dirs),
                                   logfile=f"{containers.LOG_DIR}/install.log",
                                   modules=modules, demo=True, test_enable=True,
                                   test_tags=test_tags(project, modules))
    info = svc.docker.start(
        name=containers.container_name(svc, build["id"], "install"), image=build["image"],
        command=command, labels=containers.labels(project, build, "install"),
        mounts=containers.mounts(svc, project, paths), env=containers.environment(project),
        network=svc.docker.ensure_network(project["name"]))
    try:
        exit_code = _wait_watching(svc, build, info.id, paths.logs / "install.log")
        output = svc.docker.logs(info.id)
        if output.strip():
            with open(paths.logs / "install.log", "a", encoding="utf-8") as logfile:
                logfile.write(output if output.endswith("\n") else output + "\n")
        return exit_code
    finally:
        svc.docker.remove(info.id)


def test_tags(project: dict, modules: list[str]) -> str:
    """The project's test tags, else the branch's own modules only: with --test-enable
    alone, Odoo also runs the tests of every dependency installed on the fresh database
    (base's thousand tests), which is not what a push asks for."""
    return project["test_tags"] or ",".join(f"/{module}" for module in modules)


def _wait_watching(svc, build: dict, container_id: str, logfile) -> int:
    """Wait for the container; switch the build to "testing" when tests start."""
    outcome: dict = {}

    def wait():
        try:
            outcome["code"] = svc.docker.wait(container_id, svc.config.builds.install_timeout)
        except Exception as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait, name=f"wait-{build['id']}", daemon=True)
    waiter.start()
    testing = False
    while waiter.is_alive():
        waiter.join(PROGRESS_POLL_SECONDS)
        if not testing and TEST_STARTED.search(_read(logfile)):
            testing = True
            _state(svc, build, "testing")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["code"]


def _read(path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _test_dict(test) -> dict:
    return {"module": test.module, "name": test.name, "kind": test.kind,
            "traceback": test.traceback[-8000:]}


def _state(svc, build: dict, state: str) -> None:
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], state)


def _update(svc, build: dict, **fields) -> None:
    with svc.db.transaction() as conn:
        builds_store.update(conn, build["id"], **fields)
