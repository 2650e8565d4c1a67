"""Steps the pipelines share: checkout, image, one-off Odoo runs, build bookkeeping."""

from __future__ import annotations

import logging
import shutil
import threading

from appliance.jobs import containers
from appliance.jobs.steps import BuildFailed
from appliance.runtime import git, images, odoo
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)

# How often a one-off container's log is looked at while it runs.
PROGRESS_POLL_SECONDS = 0.5


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


def run_oneoff(svc, project: dict, build: dict, command: list[str], role: str, paths,
               log_name: str, on_progress=None) -> int:
    """Run Odoo once in a container (install, update, neutralize) with its log in
    logs/<log_name>.log; returns the exit code. on_progress(log_text) is called while
    it runs."""
    info = svc.docker.start(
        name=containers.container_name(svc, build["id"], role), image=build["image"],
        command=command, labels=containers.labels(project, build, role),
        mounts=containers.mounts(svc, project, build, paths), env=containers.environment(project),
        network=svc.docker.ensure_network(project["name"]))
    logfile = paths.logs / f"{log_name}.log"
    try:
        exit_code = _wait_watching(svc, build, info.id, logfile, on_progress)
        output = svc.docker.logs(info.id)
        if output.strip():
            with open(logfile, "a", encoding="utf-8") as handle:
                handle.write(output if output.endswith("\n") else output + "\n")
        return exit_code
    finally:
        svc.docker.remove(info.id)


def _wait_watching(svc, build: dict, container_id: str, logfile, on_progress) -> int:
    """Wait for the container, showing its log to on_progress now and then."""
    outcome: dict = {}

    def wait():
        try:
            outcome["code"] = svc.docker.wait(container_id, svc.config.builds.install_timeout)
        except Exception as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait, name=f"wait-{build['id']}", daemon=True)
    waiter.start()
    while waiter.is_alive():
        waiter.join(PROGRESS_POLL_SECONDS)
        if on_progress is not None:
            on_progress(read(logfile))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["code"]


def read(path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def set_state(svc, build: dict, state: str) -> None:
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], state)


def update(svc, build: dict, **fields) -> None:
    """Set columns of the build, in the store and in the pipeline's own copy."""
    with svc.db.transaction() as conn:
        builds_store.update(conn, build["id"], **fields)
    build.update(fields)


def serve(svc, project: dict, build: dict, steps, result: str | None = None) -> None:
    """The "start" and "health" steps: the build's server up and answering, then running
    (with its result, when the pipeline has not set one before)."""
    set_state(svc, build, "starting")
    with steps.step("start") as out:
        build["host_port"] = containers.start_server(svc, project, build)
        out["detail"] = f"port {build['host_port']}"
    with steps.step("health") as out:
        seconds = containers.server_ready(svc, build["id"], build["host_port"])
        out["detail"] = f"ready after {seconds:.1f} s"
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], "running", host_port=build["host_port"],
                               **({"result": result} if result else {}))


def code_and_image(svc, project: dict, build: dict, paths, steps) -> tuple[list[str], list[str]]:
    """The "checkout" and "image" steps every pipeline starts with; returns the modules
    and their folders."""
    with steps.step("checkout") as out:
        modules, dirs = checkout(svc, project, build, paths)
        out["detail"] = f"{len(modules)} module(s): {', '.join(modules)}"
        update(svc, build, modules=",".join(modules), addons_dirs=",".join(dirs))
    with steps.step("image") as out:
        out["detail"] = image(svc, build, paths)
        update(svc, build, image=out["detail"])
    return modules, dirs
