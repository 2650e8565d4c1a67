"""Steps the pipelines share: checkout, image, one-off Odoo runs, build bookkeeping."""

from __future__ import annotations

import logging
import shutil

from appliance.jobs import bytecode, containers
from appliance.jobs.steps import BuildFailed
from appliance.runtime import buildfs, git, images, odoo
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)


def checkout(svc, project: dict, build: dict, paths) -> tuple[list[str], list[str]]:
    """Write the revision's files; return the modules to install and their folders."""
    repo = svc.config.paths.repos / f"{project['name']}.git"
    if paths.src.exists():
        shutil.rmtree(paths.src)
    git.export_tree(repo, build["commit"], paths.src, group=svc.config.runtime.uid)
    found = odoo.find_modules(paths.src)
    if not found:
        raise BuildFailed("no Odoo module found in this branch (no folder with a "
                          "__manifest__.py)")
    wanted = [m.strip() for m in project["modules"].split(",") if m.strip()]
    names = wanted or [m.name for m in found]
    return names, odoo.addons_dirs(paths.src, found)


def image(svc, project: dict, build: dict, paths) -> str:
    pip_log = paths.logs / "pip.log"
    cfg = svc.config.runtime
    runtime = images.runtime_image(svc.docker, cfg, pip_log)
    version = project["odoo_version"]
    bytecode.ensure(svc, version, containers.odoo_source(svc, version), runtime.tag)
    repo = svc.config.paths.repos / f"{build['project']}.git"
    requirements = git.read_file(repo, build["commit"], "requirements.txt")
    apt = git.read_file(repo, build["commit"], "apt.txt")
    result = images.project_image(svc.docker, cfg, runtime.tag, requirements, apt, pip_log)
    if result.cached:
        with buildfs.open_append(paths.root, "logs/pip.log") as handle:
            what = ("no requirements.txt or apt.txt: the runtime image"
                    if requirements is None and apt is None else "cached, built before")
            handle.write(f"image {result.tag}: {what}\n")
    return result.tag


def run_oneoff(svc, project: dict, build: dict, command: list[str], role: str, paths,
               log_name: str, on_line=None) -> int:
    """Run Odoo once in a container (install, update, neutralize) and return its exit
    code. Its output, as Docker hands it over, goes to logs/<log_name>.log, a file of
    the daemon's that no container sees; on_line(line) is called with each line."""
    info = svc.docker.start(
        name=containers.container_name(svc, build["id"], role), image=build["image"],
        command=command, labels=containers.labels(project, build, role),
        mounts=containers.mounts(svc, project, build, paths), env=containers.environment(),
        network=svc.docker.ensure_network(project["name"]), tmpfs=containers.TMPFS)
    try:
        with buildfs.open_append(paths.root, f"logs/{log_name}.log") as handle:
            lines = LineSplitter(on_line)

            def write(text: str) -> None:
                handle.write(text)
                handle.flush()
                lines.feed(text)

            return svc.docker.follow_to_end(info.id, svc.config.builds.install_timeout,
                                            write)
    finally:
        svc.docker.remove(info.id)


class LineSplitter:
    """Hands complete lines of a stream of text chunks to a callback."""

    def __init__(self, callback):
        self.callback = callback
        self.pending = ""

    def feed(self, text: str) -> None:
        if self.callback is None:
            return
        *complete, self.pending = (self.pending + text).split("\n")
        for line in complete:
            self.callback(line)


def read_log(paths, name: str) -> str:
    """A log the daemon wrote in the build's logs/ folder ("" when there is none)."""
    return buildfs.read_text(paths.root, f"logs/{name}.log")


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
        out["detail"] = image(svc, project, build, paths)
        update(svc, build, image=out["detail"])
    return modules, dirs
