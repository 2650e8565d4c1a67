"""Steps the pipelines share: checkout, image, one-off Odoo runs, updates, build
bookkeeping. Each step returns what the next ones need; what a later start of the
server needs is also recorded on the build's row."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

from appliance.jobs import bytecode, containers
from appliance.jobs.plan import Plan
from appliance.jobs.steps import BuildFailed
from appliance.runtime import buildfs, filestore, git, images, odoo
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)

# Room needed for a copy of a database besides twice its size: WAL, temporary files.
COPY_MARGIN_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Code:
    """What the checkout and image steps give the next ones."""

    modules: tuple[str, ...]               # to install: the project's list, else all found
    addons_dirs: tuple[str, ...]           # the branch's folders holding its modules
    manifests: tuple[odoo.Manifest, ...]   # every module of the branch
    image: str                             # the image the build's containers run


def checkout(svc, project: dict, build: dict, paths) -> tuple[list[str], list[odoo.Manifest]]:
    """Write the revision's files; return the modules to install and every one found."""
    repo = svc.config.paths.repos / f"{project['name']}.git"
    if paths.src.exists():
        shutil.rmtree(paths.src)
    git.export_tree(repo, build["commit"], paths.src, group=svc.config.runtime.uid)
    found = odoo.find_modules(paths.src)
    if not found:
        raise BuildFailed("no Odoo module found in this branch (no folder with a "
                          "__manifest__.py)")
    wanted = [m.strip() for m in project["modules"].split(",") if m.strip()]
    return wanted or [m.name for m in found], found


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


def code_and_image(svc, project: dict, build: dict, paths, steps) -> Code:
    """The "checkout" and "image" steps every pipeline starts with."""
    with steps.step("checkout") as out:
        modules, found = checkout(svc, project, build, paths)
        dirs = odoo.addons_dirs(paths.src, found)
        out["detail"] = f"{len(modules)} module(s): {', '.join(modules)}"
        record(svc, build["id"], modules=",".join(modules), addons_dirs=",".join(dirs))
    with steps.step("image") as out:
        out["detail"] = tag = image(svc, project, build, paths)
        record(svc, build["id"], image=tag)
    return Code(modules=tuple(modules), addons_dirs=tuple(dirs), manifests=tuple(found),
                image=tag)


def setup(project: dict, build: dict, code: Code, database: str,
          paths: containers.BuildPaths) -> containers.OdooSetup:
    """What the build's containers run with, once its code and database are ready."""
    return containers.OdooSetup(project=project, build_id=build["id"], stage=build["stage"],
                                image=code.image, database=database,
                                addons_dirs=code.addons_dirs, paths=paths)


def run_oneoff(svc, setup: containers.OdooSetup, command: list[str], name: str,
               on_line=None) -> int:
    """Run Odoo once in a container (install, update, neutralize: its `name`) and return
    its exit code. Its output, as Docker hands it over, goes to logs/<name>.log, a file
    of the daemon's that no container sees; on_line(line) is called with each line."""
    info = svc.docker.start(
        name=containers.container_name(svc, setup.build_id, name), image=setup.image,
        command=command, labels=containers.labels(setup, name),
        mounts=containers.mounts(svc, setup), env=containers.environment(),
        network=svc.docker.ensure_network(setup.project["name"]), tmpfs=containers.TMPFS)
    try:
        with buildfs.open_append(setup.paths.root, f"logs/{name}.log") as handle:
            lines = LineSplitter(on_line)

            def write(text: str) -> None:
                handle.write(text)
                handle.flush()
                lines.feed(text)

            return svc.docker.follow_to_end(info.id, svc.config.builds.install_timeout,
                                            write)
    finally:
        svc.docker.remove(info.id)


# The longest line handed over: longer ones (a build printing without line breaks) come
# in pieces of this size, so the daemon never gathers more of it.
MAX_LINE_CHARS = 64 * 1024


class LineSplitter:
    """Hands complete lines of a stream of text chunks to a callback (a line longer
    than MAX_LINE_CHARS in pieces of that size)."""

    def __init__(self, callback):
        self.callback = callback
        self.pending = ""

    def feed(self, text: str) -> None:
        if self.callback is None:
            return
        *complete, rest = (self.pending + text).split("\n")
        for line in complete:
            for start in range(0, max(len(line), 1), MAX_LINE_CHARS):
                self.callback(line[start:start + MAX_LINE_CHARS])
        while len(rest) > MAX_LINE_CHARS:
            self.callback(rest[:MAX_LINE_CHARS])
            rest = rest[MAX_LINE_CHARS:]
        self.pending = rest


def read_log(paths, name: str) -> str:
    """A log the daemon wrote in the build's logs/ folder ("" when there is none)."""
    return buildfs.read_text(paths.root, f"logs/{name}.log")


def update_command(svc, setup: containers.OdooSetup, plan: Plan) -> list[str]:
    """`-u` of the modules whose version went up, `-i` of the new ones, in one run,
    without demo data or tests."""
    server = containers.common_args(svc, setup)
    if not plan.update:
        return odoo.install_command(**server, modules=list(plan.install), demo=False,
                                    test_enable=False)
    extra = ["-i", ",".join(plan.install)] if plan.install else []
    return odoo.update_command(**server, modules=sorted(plan.update), test_enable=False,
                               extra=extra)


def run_update(svc, setup: containers.OdooSetup, command: list[str]) -> str:
    """Run an install or update (update.log); returns its exit code and verdict, raises
    BuildFailed if it failed."""
    code = run_oneoff(svc, setup, command, "update")
    verdict = odoo.classify(read_log(setup.paths, "update"), code,
                            svc.config.builds.warning_ignore)
    if code != 0 or verdict.result == "failure":
        raise BuildFailed(f"the update failed: {verdict.reason or f'exit code {code}'} "
                          "(see update.log)")
    return f"exit code {code}" + (f": {verdict.reason}" if verdict.reason else "")


def check_room(svc, database: str, folder) -> int:
    """Refuse a copy of `database` (and its files under `folder`) when the disk cannot
    hold twice its size and a margin; returns its size in bytes."""
    size = svc.postgres.database_size(database)
    filestore.check_free_space(folder, 2 * size + COPY_MARGIN_BYTES)
    return size


def set_state(svc, build_id: int, state: str) -> None:
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build_id, state)


def record(svc, build_id: int, **fields) -> None:
    """Keep columns of the build in the store (what a later start, the page or a
    restart needs to know)."""
    with svc.db.transaction() as conn:
        builds_store.update(conn, build_id, **fields)


def event(svc, build: dict, kind: str, message: str, data: dict | None = None) -> None:
    """An entry in the build's branch history."""
    with svc.db.transaction() as conn:
        builds_store.add_event(conn, project_id=build["project_id"],
                               branch_id=build["branch_id"], build_id=build["id"], kind=kind,
                               message=message, data=data)
