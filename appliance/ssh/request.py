"""What an SSH client asks for (SSH_ORIGINAL_COMMAND), read into one of the few requests
the appliance serves, or refused with the words to show.

    git-upload-pack '/acme.git'      git fetch/clone of ssh://<user>@<host>/acme.git
    git-receive-pack 'acme.git'      git push to <user>@<host>:acme.git
    build-42                         a shell in build 42
    acme/feature/x                   the same in the latest running build of a branch
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from appliance.errors import UserError
from appliance.runtime import git
from appliance.store import projects as projects_store

GIT_SERVICES = ("git-upload-pack", "git-receive-pack")
# A repository path as git clients send it: /acme.git, acme.git, /acme, acme/
REPOSITORY = re.compile(r"^/?(?P<name>[^/]+?)(?:\.git)?/?$")
BUILD = re.compile(r"^build-(?P<id>[1-9][0-9]{0,11})$")
# What a refusal shows of the command it refuses.
SHOWN = 60


@dataclass(frozen=True)
class GitRequest:
    service: str  # one of GIT_SERVICES
    project: str

    @property
    def pushes(self) -> bool:
        return self.service == "git-receive-pack"


@dataclass(frozen=True)
class ShellRequest:
    build_id: int | None = None
    project: str | None = None
    branch: str | None = None
    command: str = ""  # words after the target: refused (only a shell is served)

    def target(self) -> str:
        return f"build-{self.build_id}" if self.build_id else f"{self.project}/{self.branch}"


def usage(destination: str, remote: str) -> str:
    """What this account serves, for `destination` (`[-p port] user@host`) and a
    project's `remote` (ssh://.../<project>.git)."""
    return ("This account serves git and build shells, nothing else:\n"
            f"  git remote add appliance {remote}\n"
            f"  ssh -t {destination} build-<id>            a shell in a build\n"
            f"  ssh -t {destination} <project>/<branch>    a shell in the branch's build\n")


def parse(original: str | None) -> GitRequest | ShellRequest:
    """The request in the client's command line; UserError for anything else."""
    if not original or not original.strip():
        raise UserError("no command given: there is no plain shell here")
    try:
        words = shlex.split(original)
    except ValueError:
        raise UserError(f"unreadable command {_shown(original)}") from None
    if not words:
        raise UserError("no command given: there is no plain shell here")
    if words[0] == "git" and len(words) > 1:  # `git receive-pack` as some clients send
        words = [f"git-{words[1]}", *words[2:]]
    if words[0] in GIT_SERVICES:
        return _git(words)
    if words[0].startswith("git-"):
        raise UserError(f"{_shown(words[0])} is not served: only fetch and push")
    rest = original.strip().split(None, 1)
    command = rest[1].strip() if len(rest) > 1 else ""
    match = BUILD.match(words[0])
    if match:
        return ShellRequest(build_id=int(match.group("id")), command=command)
    project, slash, branch = words[0].partition("/")
    if slash and projects_store.PROJECT_NAME.match(project) and git.BRANCH_NAME.match(branch):
        return ShellRequest(project=project, branch=branch, command=command)
    raise UserError(f"unknown command {_shown(original)}")


def _git(words: list[str]) -> GitRequest:
    if len(words) != 2:
        raise UserError(f"{words[0]} takes one repository, as git sends it")
    match = REPOSITORY.match(words[1])
    if not match or not projects_store.PROJECT_NAME.match(match.group("name")):
        raise UserError(f"no repository {_shown(words[1])}: repositories are "
                        "/<project>.git")
    return GitRequest(words[0], match.group("name"))


def _shown(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")
