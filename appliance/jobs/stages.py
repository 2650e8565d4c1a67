"""What people do to branches: move them between stages, merge them, rebuild them.

Each action checks, changes the store (and for a merge the repository), records an event
in the branch's history and queues the build that follows. They are quick, so the web UI
and the CLI call them directly; the builds themselves run in the workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from appliance import policy
from appliance.errors import UserError
from appliance.jobs import push
from appliance.runtime import git
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

STAGES = projects_store.STAGES


class MergeConflict(UserError):
    """The merge would conflict; nothing was changed."""

    def __init__(self, source: str, target: str, files: list[str]):
        self.files = files
        super().__init__(f"merging {source} into {target} conflicts in "
                         f"{', '.join(files)}: nothing was changed; merge locally and push")


@dataclass
class MergeResult:
    kind: str            # "fast-forward" or "merge"
    commit: str
    build: dict | None = field(default=None)


def not_archived(project: dict) -> None:
    """An archived project changes no more, from any side (web, CLI, pushes)."""
    if project.get("archived_at") is not None:
        raise UserError(f"{project['name']} is archived: nothing in it can change until an "
                        "appliance admin unarchives it")


def move(svc, project: dict, branch_name: str, stage: str, user: dict | None) -> dict:
    """Put a branch in another stage (no build: its next push builds as the stage says)."""
    not_archived(project)
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    with svc.db.transaction() as conn:
        branch = projects_store.get_branch(conn, project, branch_name)
        old = branch["stage"]
        # Leaving a stage and entering one both take that stage's right to move branches.
        policy.require_actor(conn, user, project, "stage_moves", old)
        policy.require_actor(conn, user, project, "stage_moves", stage)
        if old == stage:
            return branch
        if stage == "production":
            current = projects_store.production_branch(conn, project)
            if current is not None:
                raise UserError(f"{project['name']} already has a production branch "
                                f"({current['name']}): merge into it instead, or move it "
                                "to development first")
        # A branch leaving staging for development keeps its builds but stops rebuilding
        # on push until someone says otherwise (as Odoo.sh does).
        behaviour = "nothing" if (old, stage) == ("staging", "development") else None
        if stage == "staging" and old != "staging":
            behaviour = "new"
        branch = projects_store.set_stage(conn, branch, stage, behaviour)
        _event(conn, project, branch, user, "stage_changed",
               f"moved from {old} to {stage}", {"from": old, "to": stage})
    log.info("%s/%s moved from %s to %s", project["name"], branch_name, old, stage)
    return branch


def merge(svc, project: dict, source: str, target: str, user: dict | None) -> MergeResult:
    """Merge source into target: fast-forward where possible, else a merge commit by the
    acting user; a conflict changes nothing. The target is then built as its stage says."""
    not_archived(project)
    if source == target:
        raise UserError("a branch cannot be merged into itself")
    repo_path = svc.config.paths.repos / f"{project['name']}.git"
    with svc.db.transaction() as conn:
        target_branch = projects_store.get_branch(conn, project, target)
        source_branch = projects_store.get_branch(conn, project, source)
        policy.require_actor(conn, user, project, "view", source_branch["stage"])
        policy.require_actor(conn, user, project, "stage_moves", target_branch["stage"])
    name = user["name"] if user else "appliance"
    outcome = git.merge_branches(repo_path, source, target, author=name,
                                 email=f"{name}@{_host(svc)}")
    if outcome.conflicts:
        raise MergeConflict(source, target, outcome.conflicts)
    if outcome.kind == "up-to-date":
        raise UserError(f"{target} already contains {source}: nothing to merge")
    info = git.commit_info(repo_path, outcome.commit)
    with svc.db.transaction() as conn:
        # The commits the merge brings are in the target's history, as a push's are.
        push.record_commits(conn, project, target_branch, user,
                            git.new_commits(repo_path, outcome.previous, outcome.commit))
        build = builds_store.enqueue(conn, project=project, branch=target_branch,
                                     commit=info.sha, message=info.message, author=info.author,
                                     user_id=user["id"] if user else None, trigger="merge")
        _event(conn, project, target_branch, user, "merge",
               f"merged {source} into {target} ({outcome.kind})",
               {"source": source, "commit": outcome.commit, "kind": outcome.kind},
               build_id=build["id"])
    return MergeResult(outcome.kind, outcome.commit, build)


def rebuild(svc, project: dict, branch_name: str, user: dict | None,
            trigger: str = "rebuild") -> dict:
    """A new build of the branch's current head; refused while the branch is building."""
    with svc.db.transaction() as conn:
        branch = projects_store.get_branch(conn, project, branch_name)
        policy.require_actor(conn, user, project, "rebuild", branch["stage"])
        if trigger == "refresh" and branch["stage"] != "staging":
            raise UserError("only a staging branch can be refreshed from production")
        build = queue_head(svc, conn, project, branch, user, trigger)
        what = "refresh from production" if trigger == "refresh" else "rebuild"
        _event(conn, project, branch, user, trigger, f"{what}: build #{build['id']} queued",
               {"build": build["id"]}, build_id=build["id"])
    return build


def queue_head(svc, conn, project: dict, branch: dict, user: dict | None, trigger: str,
               source: dict | None = None) -> dict:
    """Queue a build of the branch's current head (a rebuild, a refresh, a restore, an
    import); refused while the branch is building or when it has no commit."""
    not_archived(project)
    # Two clicks at once must not queue two builds: the branch row is the lock.
    if builds_store.branch_busy(conn, branch["id"], lock=True):
        raise UserError(f"{branch['name']} is building: wait for it to end")
    repo_path = svc.config.paths.repos / f"{project['name']}.git"
    head = git.branch_head(repo_path, branch["name"])
    if head is None:
        raise UserError(f"{branch['name']} has no commit to build")
    info = git.commit_info(repo_path, head)
    return builds_store.enqueue(conn, project=project, branch=branch, commit=info.sha,
                                message=info.message, author=info.author,
                                user_id=user["id"] if user else None, trigger=trigger,
                                source=source)


def _event(conn, project, branch, user, kind, message, data=None, build_id=None) -> None:
    builds_store.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                           build_id=build_id, user_id=user["id"] if user else None, kind=kind,
                           message=message, data=data)


def _host(svc) -> str:
    url = svc.config.server.public_url
    return url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "appliance"
