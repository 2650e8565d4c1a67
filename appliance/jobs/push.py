"""What happens when someone pushes.

1. pre-receive (`check`): every updated ref must be a branch with an acceptable name, and
   branches are not deleted by push; anything else refuses the whole push, nothing changes.
2. post-receive (`received`): for each updated branch, the branch is created if new
   (the project's production branch name becomes production, any other development), the
   pushed commits are recorded in its history, and one build of the new head is queued.
   The answer names each build's page; git shows it to the pusher as `remote:` lines.
"""

from __future__ import annotations

import logging

from appliance import layout, policy
from appliance.config import Config
from appliance.errors import GitError, NotFound, PermissionDenied, UserError
from appliance.runtime import git
from appliance.store import audit
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)


def check(project: dict, updates_text: str, conn=None, user: dict | None = None) -> list[str]:
    """Refuse the push (UserError) unless every update is an acceptable branch update
    and, for a pusher, one their role may make: pushing to a branch takes the right to
    bring code into its stage (policy "stage_moves"; a new branch is development's, or
    production's when it is the project's production branch and there is none yet)."""
    updates = git.parse_ref_updates(updates_text)
    if project.get("archived_at") is not None:
        raise UserError(f"push refused: {project['name']} is archived; an appliance admin "
                        "can unarchive it")
    if user is not None:
        refused = _not_allowed(conn, project, user, updates)
        if refused:
            raise PermissionDenied("push refused, nothing was changed:\n" + "\n".join(refused))
    problems = []
    for update in updates:
        if update.branch is None:
            if update.ref.startswith("refs/tags/"):
                continue
            problems.append(f"{update.ref}: only branches and tags can be pushed")
        elif update.deleted:
            problems.append(f"{update.branch}: deleting a branch by push is not allowed; "
                            "delete it from the appliance instead")
        else:
            try:
                git.check_branch_name(update.branch)
            except GitError as exc:
                problems.append(str(exc))
    if problems:
        raise UserError("push refused, nothing was changed:\n" + "\n".join(problems))
    return []


def _not_allowed(conn, project: dict, user: dict, updates) -> list[str]:
    """What the user's role may not push (NotFound when the project is not theirs)."""
    if policy.principal(conn, user, project) in ("anonymous", "outsider"):
        raise NotFound(f"no project {project['name']!r}")
    problems = []
    for update in updates:
        if update.branch is None:
            continue
        stage = projects_store.stage_for(conn, project, update.branch)
        if not policy.allows(conn, user, project, "stage_moves", stage):
            problems.append(f"{update.branch}: your role in {project['name']} may not push "
                            f"to a {stage} branch")
    return problems


def received(conn, cfg: Config, project: dict, user: dict, updates_text: str,
             address: str = "") -> list[str]:
    """Record the pushed branches and queue a build of each; the lines to show the pusher.
    Nothing is queued in a project archived since the push was checked (its row is read
    again, after an archive under way has ended: the archive found nothing queued)."""
    now = conn.execute("SELECT archived_at FROM projects WHERE id = %s FOR SHARE",
                       (project["id"],)).fetchone()
    if now is None or now["archived_at"] is not None:
        log.warning("push to %s by %s: the project was archived meanwhile; no build queued",
                    project["name"], user["name"] if user else "the appliance")
        return [f"{project['name']} was archived while this push ran: no build was queued"]
    repo = cfg.paths.repos / f"{project['name']}.git"
    lines = []
    for update in git.parse_ref_updates(updates_text):
        if update.branch is None or update.deleted:
            continue
        branch, created = projects_store.ensure_branch(conn, project, update.branch)
        if created:
            builds_store.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                                   user_id=user["id"], kind="branch_created",
                                   message=f"branch {branch['name']} created in "
                                           f"{branch['stage']}")
        _record_commits(conn, repo, project, branch, user, update)
        if branch["stage"] == "staging" and branch["push_behaviour"] == "nothing":
            lines.append(f"{branch['name']} (staging): no build, its push behaviour is "
                         "'do nothing' (rebuild it from the appliance)")
            _audit(conn, project, user, update, branch, None, address)
            continue
        head = git.commit_info(repo, update.new)
        build = builds_store.enqueue(conn, project=project, branch=branch, commit=head.sha,
                                     message=head.message, author=head.author,
                                     user_id=user["id"])
        lines.append(f"{branch['name']} ({branch['stage']}): build #{build['id']} queued: "
                     f"{layout.build_page(cfg, build['id'])}")
        names = layout.proxy_urls(cfg, project["name"], branch["name"], build["id"])
        if names:
            lines.append(f"  it will answer at {names[0]} and {names[1]}")
        log.info("push to %s/%s by %s: build %s queued", project["name"], branch["name"],
                 user["name"], build["id"])
        _audit(conn, project, user, update, branch, build["id"], address)
    return lines


def _audit(conn, project, user, update, branch, build_id: int | None, address: str) -> None:
    """The push in the audit trail, in the push's own transaction."""
    audit.record(conn, source="git", action="git.push", outcome="ok", user=user,
                 address=address,
                 project=project, branch=branch["name"], build_id=build_id,
                 details={"old": update.old, "new": update.new, "stage": branch["stage"]})


def _record_commits(conn, repo, project, branch, user, update) -> None:
    record_commits(conn, project, branch, user, git.new_commits(repo, update.old, update.new))


def record_commits(conn, project, branch, user, commits) -> None:
    """Each commit (newest first, as git.new_commits gives them) in the branch's history."""
    for commit in reversed(commits):
        builds_store.add_event(
            conn, project_id=project["id"], branch_id=branch["id"],
            user_id=user["id"] if user else None,
            kind="commit", message=commit.message.splitlines()[0] if commit.message else "",
            data={"sha": commit.sha, "author": commit.author, "email": commit.email,
                  "date": commit.date.isoformat(), "message": commit.message[:4000]})
