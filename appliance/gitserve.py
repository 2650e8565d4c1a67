"""A project's repository served to git clients, over HTTP (web/git_http.py) or SSH
(ssh/git.py): who may reach it, how much a push may bring, and what the hooks answer.

Both transports run git's own programs (`git http-backend`, `git upload-pack`,
`git receive-pack`) on the bare repository; the repository's hooks (githook.py) hand the
ref updates back to the process that started the push, which answers with
`hook_answer` below: the same checks and the same `remote:` lines whichever way the push
came.
"""

from __future__ import annotations

from pathlib import Path

from appliance import policy
from appliance.config import Config
from appliance.errors import NotFound, PermissionDenied, UserError
from appliance.jobs import push
from appliance.runtime import git
from appliance.store import audit
from appliance.store import projects as projects_store
from appliance.store import users as users_store

SERVICES = ("git-upload-pack", "git-receive-pack")
HOOKS = ("pre-receive", "post-receive")


def repository(conn, cfg: Config, user: dict, name: str) -> tuple[dict, Path]:
    """The project named `name` and its repository, if `user` may use it (any member:
    fetch and push alike); NotFound, in the same words for a project that does not exist
    and one the user may not know, otherwise."""
    refusal = NotFound(f"project {name!r} does not exist (or you are not a member of it)")
    try:
        project = projects_store.get_project(conn, name)
    except UserError:
        raise refusal from None
    if not policy.allows(conn, user, project, "view"):
        raise refusal
    repo = cfg.paths.repos / f"{project['name']}.git"
    if not repo.is_dir():
        raise NotFound(f"project {name!r} has no repository")
    return project, repo


def push_allowance(cfg: Config, repo: Path, incoming: int | None) -> int:
    """Bytes the push may bring (git's receive.maxInputSize); GitError, with the words
    to show the pusher, when it is over [git] max_push_bytes or the repository's quota."""
    return git.push_allowance(repo, incoming, max_push=cfg.git.max_push_bytes,
                              quota=cfg.git.repository_quota)


def max_input_env(allowed: int) -> dict[str, str]:
    """The environment that makes git stop a pack stream past `allowed` bytes."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "receive.maxInputSize",
            "GIT_CONFIG_VALUE_0": str(allowed)}


def hook_answer(db, cfg: Config, project_id: int, user_id: int, hook: str,
                updates: str, address: str = "") -> list[str]:
    """What a repository hook prints for the push of `user_id` (from `address`) into
    `project_id`: the pre-receive check (names, and the pusher's right to push to each
    branch's stage; UserError refuses the whole push, and the refusal is kept in the
    audit trail) or, after it, the builds queued (each in the trail)."""
    if hook not in HOOKS:
        raise UserError(f"no hook {hook!r}")
    with db.transaction() as conn:
        project = projects_store.project_by_id(conn, project_id)
        user = users_store.get_user(conn, user_id)
        if hook == "post-receive":
            return push.received(conn, cfg, project, user, updates, address)
        try:
            return push.check(project, updates, conn, user)
        except UserError as exc:
            refusal = exc
    with db.transaction() as conn:  # the check's own transaction was rolled back
        audit.record(conn, source="git", action="git.push",
                     outcome="denied" if isinstance(refusal, PermissionDenied) else "refused",
                     user=user, address=address, project=project, reason=str(refusal)[:500])
    raise refusal
