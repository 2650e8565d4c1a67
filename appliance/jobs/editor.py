"""The online editor: what its buttons do to a build, top to bottom.

open      a folder or a file of the build's source tree (builds/<id>/src, the checkout
          its containers mount read-only) through runtime.source_tree: paths that
          cannot leave the tree, links never followed, big and binary files not opened
save      one file, atomically, keeping its mode; refused when it changed since opened
restart   the build's server, on the files as they are now (a task for the workers)
update    one module, the open file's (`-u`, logged in update.log) on the build's
          database, its server stopped first and started again after (a task)
commit    the files that differ from the build's commit, as a commit by the signed-in
          user on top of the branch's head (runtime.git_commits), then checked, recorded
          and built exactly as a push of that commit is (jobs.push)

Production is read-only here for everyone, admins included: it changes through a push or
a merge, with its deploy's snapshot and rollback. Every entry point asks the policy
("editor" on the build's stage, and on the branch's when it has moved since) itself.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from appliance import policy
from appliance.errors import ApplianceError, PermissionDenied, UserError
from appliance.jobs import common, containers, push
from appliance.jobs.steps import BuildFailed
from appliance.runtime import checkout, git, git_commits, odoo, source_tree
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store import users as users_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

EDITABLE_STAGES = ("development", "staging")
TASKS = ("restart_server", "update_module")
# The editor restarts and updates builds that have a database and a server to start.
SERVED_STATES = (BuildState.RUNNING, BuildState.STOPPED)
# Files change only once the pipeline has written them, and while they are still there.
UNSETTLED_STATES = (BuildState.QUEUED, *builds_store.ACTIVE_STATES)
MANIFEST = "__manifest__.py"
MODULE_NAME = re.compile(r"[A-Za-z0-9_]{1,100}")


@dataclass(frozen=True)
class Target:
    project: dict
    build: dict
    branch: dict   # as it is now: its stage may have changed since the build


@dataclass(frozen=True)
class Page:
    """What the editor shows: the folders from the root to the open path, each listed,
    and the open file (None when the path is a folder)."""
    parts: tuple[str, ...]
    folders: list[tuple[str, list[source_tree.Entry], bool]]  # (path, entries, cut)
    file: source_tree.FileView | None
    read_only: str | None   # why the tree cannot be changed, or None
    absent: str | None = None  # why there is no tree to show, or None


def load(conn, build_id: int) -> Target:
    build = builds_store.get_build(conn, build_id)
    project = projects_store.project_by_id(conn, build["project_id"])
    branch = conn.execute("SELECT * FROM branches WHERE id = %s", (build["branch_id"],)).fetchone()
    return Target(project, build, branch)


def source_root(cfg, build: dict) -> Path:
    return containers.build_paths(cfg, build["id"]).src


def read_only_reason(target: Target) -> str | None:
    """Why the build's files may not be changed here (None: they may)."""
    build, branch = target.build, target.branch
    if "production" in (build["stage"], branch["stage"]):
        return ("production is read-only in the editor: change it with a push or a merge, "
                "which deploys with a snapshot and rolls back on failure")
    if build["stage"] not in EDITABLE_STAGES:
        return f"{build['stage']} builds are read-only in the editor"
    if build["state"] in UNSETTLED_STATES:
        return f"build #{build['id']} is {build['state']}: wait for it to end"
    if build["state"] == BuildState.DROPPED:
        return f"build #{build['id']} was collected: its files are gone"
    return None


def require(conn, user: dict, target: Target, write: bool = False) -> None:
    """The user may use the editor on this build (NotFound or PermissionDenied if not);
    with `write`, its files may also be changed (PermissionDenied for production, a
    UserError while the build is in progress)."""
    policy.require(conn, user, target.project, "editor", target.build["stage"])
    if not write:
        return
    if target.branch["stage"] != target.build["stage"]:
        policy.require(conn, user, target.project, "editor", target.branch["stage"])
    reason = read_only_reason(target)
    if reason and "production" in (target.build["stage"], target.branch["stage"]):
        raise PermissionDenied(reason)
    if reason:
        raise UserError(reason)


def page(svc, target: Target, raw_path: str | None) -> Page:
    """The editor's view of raw_path (the root when empty)."""
    root = source_root(svc.config, target.build)
    parts = source_tree.parse(raw_path)
    if not root.is_dir():
        state = target.build["state"]
        why = ("it is not checked out yet" if state in UNSETTLED_STATES
               else "it was collected" if state == BuildState.DROPPED else "it is gone")
        return Page((), [], None, read_only_reason(target) or why,
                    absent=f"This build has no source tree: {why}.")
    kind = source_tree.kind_of(root, parts)
    if kind in ("link", "other"):
        raise source_tree.BadPath(f"{source_tree.joined(parts)}: a symbolic link or a "
                                  "special file; not opened")
    folder = parts if kind == "folder" else parts[:-1]
    folders = []
    for depth in range(len(folder) + 1):
        entries, cut = source_tree.list_folder(root, folder[:depth])
        folders.append((source_tree.joined(folder[:depth]), entries, cut))
    opened = (source_tree.read(root, parts, svc.config.editor.max_file_bytes)
              if kind == "file" else None)
    return Page(parts, folders, opened, read_only_reason(target))


def save(svc, user: dict, build_id: int, raw_path: str, text: str,
         expected_digest: str | None) -> str:
    """Write text (UTF-8) into an existing file of the build's tree; returns its digest."""
    with svc.db.transaction() as conn:
        target = load(conn, build_id)
        require(conn, user, target, write=True)
    parts = source_tree.parse(raw_path)
    data = text.encode("utf-8")
    limit = svc.config.editor.max_file_bytes
    if len(data) > limit:
        raise UserError(f"the file would be {len(data)} bytes, more than the editor's "
                        f"{limit} ([editor] max_file_bytes): nothing was written")
    digest = source_tree.write(source_root(svc.config, target.build), parts, data,
                               expected_digest)
    log.info("%s saved %s in build #%s", user["name"], source_tree.joined(parts), build_id)
    return digest


def changes(svc, target: Target) -> dict[str, bytes]:
    """The files of the build's tree that differ from its commit: path -> bytes."""
    repo = svc.config.paths.repos / f"{target.project['name']}.git"
    tracked = [(e.path, e.size, e.oid)
               for e in checkout.list_tree(repo, target.build["commit"])
               if e.kind in ("file", "exec")]
    return source_tree.changed_files(source_root(svc.config, target.build), tracked,
                                     svc.config.editor.max_file_bytes)


def author_email(svc, user: dict) -> str:
    """The address of the user's commits: their name at the appliance's host (as merges
    made on the appliance are signed)."""
    url = svc.config.server.public_url
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "appliance"
    return f"{user['name']}@{host}"


def commit(svc, user: dict, build_id: int, message: str) -> tuple[git_commits.Committed, list[str]]:
    """Commit the edited files on the build's branch as the user, then record and build
    that commit as a push of it; returns it and the lines a push would print."""
    with svc.db.transaction() as conn:
        target = load(conn, build_id)
        require(conn, user, target, write=True)
    branch = target.branch["name"]
    edited = changes(svc, target)
    repo = svc.config.paths.repos / f"{target.project['name']}.git"
    head = git.branch_head(repo, branch)
    if head is None:
        raise UserError(f"branch {branch} has no commit: nothing was committed")
    with svc.db.transaction() as conn:  # the push's own checks, with the user's role
        push.check(target.project, f"{head} {head} refs/heads/{branch}\n", conn, user)
    made = git_commits.commit_files(repo, branch, target.build["commit"], edited,
                                    author=user["name"], email=author_email(svc, user),
                                    message=message)
    with svc.db.transaction() as conn:
        lines = push.received(conn, svc.config, target.project, user,
                              f"{made.previous} {made.sha} refs/heads/{branch}\n")
    log.info("%s committed %s on %s/%s from build #%s", user["name"], made.sha,
             target.project["name"], branch, build_id)
    return made, lines


def module_of(svc, target: Target, raw_path: str) -> str:
    """The module holding the file: the nearest folder above it with a __manifest__.py,
    which must be on the build's addons path."""
    root = source_root(svc.config, target.build)
    parts = source_tree.parse(raw_path)
    for depth in range(len(parts) - 1, 0, -1):
        folder = parts[:depth]
        try:
            found = source_tree.kind_of(root, (*folder, MANIFEST)) == "file"
        except (source_tree.BadPath, UserError):
            found = False
        if not found:
            continue
        name, parent = folder[-1], source_tree.joined(folder[:-1]) or "."
        if not MODULE_NAME.fullmatch(name):
            raise UserError(f"{name!r} is not a module name Odoo accepts")
        if parent not in (target.build["addons_dirs"] or "").split(","):
            raise UserError(f"module {name} is not on this build's addons path")
        return name
    raise UserError(f"{source_tree.joined(parts) or '/'} is in no module (no {MANIFEST} "
                    "in a folder above it)")


def request(svc, user: dict, build_id: int, kind: str, raw_path: str | None = None) -> dict:
    """Ask the workers to restart the build's server, or to update the open file's
    module and restart it; refused while the build has no server to start or another
    task of it is pending."""
    if kind not in TASKS:
        raise ValueError(f"unknown editor task {kind!r}")
    with svc.db.transaction() as conn:
        target = load(conn, build_id)
        require(conn, user, target, write=True)
        build = target.build
        if build["state"] not in SERVED_STATES:
            raise UserError(f"build #{build_id} is {build['state']}: only a running or "
                            "stopped build has a server to restart")
        module = module_of(svc, target, raw_path or "") if kind == "update_module" else None
        if builds_store.pending_task(conn, build_id) is not None:
            raise UserError(f"build #{build_id} is busy with another task: wait for it")
        task = conn.execute(
            """INSERT INTO tasks (kind, build_id, user_id, module) VALUES (%s, %s, %s, %s)
               RETURNING *""", (kind, build_id, user["id"], module)).fetchone()
        conn.execute("SELECT pg_notify(%s, %s)", (builds_store.QUEUE_CHANNEL, f"task:{task['id']}"))
    log.info("%s asked for %s of build #%s%s", user["name"], kind, build_id,
             f" ({module})" if module else "")
    return task


def run_task(svc, task: dict) -> None:
    """A worker's side of `request` (the user's right is asked again: it may be gone)."""
    with svc.db.transaction() as conn:
        target = load(conn, task["build_id"])
        user = users_store.get_user(conn, task["user_id"]) if task["user_id"] else None
        if user is not None:
            require(conn, user, target, write=True)
    who = user["name"] if user else "the appliance"
    if task["kind"] == "restart_server":
        restart(svc, target, f"restarted from the editor by {who}")
    else:
        update(svc, target, task["module"], who)


def restart(svc, target: Target, reason: str) -> None:
    """Stop the build's server (if it runs) and start it again on its database."""
    with svc.db.transaction() as conn:
        build = builds_store.get_build(conn, target.build["id"])
    if build["state"] == BuildState.RUNNING:
        containers.stop_server(svc, build, f"server {reason}")
        with svc.db.transaction() as conn:
            build = builds_store.get_build(conn, build["id"])
    if build["state"] not in SERVED_STATES:
        raise UserError(f"build #{build['id']} is {build['state']}: not restarted")
    containers.serve(svc, containers.stored_setup(svc, target.project, build))
    containers.enforce_server_cap(svc, keep=build["id"])


def update(svc, target: Target, module: str, who: str) -> None:
    """`-u module` on the build's database with its server stopped, then the server
    started again whatever the update did; a failed update is the task's error."""
    build = target.build
    if build["state"] == BuildState.RUNNING:
        containers.stop_server(svc, build, f"server stopped to update {module} ({who})")
    setup = containers.stored_setup(svc, target.project, build)
    command = odoo.update_command(**containers.common_args(svc, setup), modules=[module],
                                  test_enable=False)
    failure = None
    try:
        detail = common.run_update(svc, setup, command)
    except BuildFailed as exc:
        failure, detail = str(exc), str(exc)
    common.event(svc, build, "module_updated", f"{module} updated from the editor by {who}: "
                 f"{detail}", {"module": module, "ok": failure is None})
    restart(svc, target, f"restarted after updating {module}")
    if failure:
        raise ApplianceError(failure)
