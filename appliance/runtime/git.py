"""Git: the projects' bare repositories (pygit2), their hooks, and Odoo source trees."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pygit2

from appliance.errors import ConfigError, GitError, SystemFailure
from appliance.runtime import checkout

log = logging.getLogger(__name__)

# Branch names we build: letters, digits and . _ / -, no leading '-' or '.', no '..',
# at most 100 characters. Git already refuses spaces and '..'; we refuse shell and URL
# metacharacters too, since names end up in container names, paths and page addresses.
BRANCH_NAME = re.compile(r"^(?!.*\.\.)(?!.*//)(?![-./])[A-Za-z0-9._/-]{1,100}(?<![./])$")
ZERO = "0" * 40
HOOKS = ("pre-receive", "post-receive")
# A shallow clone of Odoo is about 400 MB; on a slow line that takes a while.
CLONE_TIMEOUT = 3600
# Repositories are the appliance's alone: folders 0750, files 0640 at most.
REPO_FOLDER_MODE = 0o750
REPO_FILE_MASK = 0o640
# Most of a push's request read for its commands when refusing it (a command is ~100 bytes).
COMMANDS_READ_LIMIT = 1024 * 1024
MiB = 1024 * 1024
_source_lock = threading.Lock()


@dataclass
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def branch(self) -> str | None:
        return self.ref[len("refs/heads/"):] if self.ref.startswith("refs/heads/") else None

    @property
    def deleted(self) -> bool:
        return self.new == ZERO


@dataclass
class CommitInfo:
    sha: str
    author: str
    email: str
    message: str
    date: datetime


def parse_ref_updates(text: str) -> list[RefUpdate]:
    """The lines git gives pre-/post-receive hooks: `<old> <new> <ref>`."""
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def check_branch_name(name: str) -> str:
    if not BRANCH_NAME.match(name):
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise GitError(f"branch name {shown!r} is not accepted: use letters, digits and "
                       ". _ / - (at most 100 characters, no '..')")
    return name


def init_repo(path: Path, hooks_dir: Path) -> None:
    """A bare repository whose hooks come only from the appliance's own folder, owned by
    the appliance's user and closed to others (0750, files 0640)."""
    if path.exists():
        raise GitError(f"a repository already exists at {path.name}")
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    configure_repo(repo, hooks_dir)
    close_repo(path)


def close_repo(path: Path) -> None:
    """Close a repository to the host's other users: folders 0750, files 0640 at most,
    and git told to keep it so. Cheap when it already is: safe to run at every start."""
    if not path.stat().st_mode & 0o777 & ~REPO_FOLDER_MODE:
        return
    open_repo(path).config["core.sharedRepository"] = "0640"
    for folder, _dirs, files in os.walk(path):
        for name in files:
            target = os.path.join(folder, name)
            if not os.path.islink(target):  # never chmod what a link points at
                os.chmod(target, os.lstat(target).st_mode & REPO_FILE_MASK)
        if folder != str(path):
            os.chmod(folder, REPO_FOLDER_MODE)
    os.chmod(path, REPO_FOLDER_MODE)  # last: a run cut short is run again


def configure_repo(repo: pygit2.Repository, hooks_dir: Path) -> None:
    repo.config["core.hooksPath"] = str(hooks_dir)
    repo.config["http.receivepack"] = True
    repo.config["receive.fsckObjects"] = True
    # what git writes later (pushes) is 0640 (0440 read-only) and its folders 0750
    repo.config["core.sharedRepository"] = "0640"


def install_hooks(hooks_dir: Path, python: str = sys.executable) -> None:
    """Write the hook scripts every repository points at. Safe to re-run."""
    from appliance import githook  # stdlib only: run by path, whatever the environment
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        script = hooks_dir / name
        body = (f"#!/bin/sh\nexec {shlex.quote(python)} -I {shlex.quote(githook.__file__)} "
                f"{name}\n")
        if not script.exists() or script.read_text() != body:
            script.write_text(body)
            script.chmod(0o755)


def open_repo(path: Path) -> pygit2.Repository:
    try:
        return pygit2.Repository(str(path))
    except (pygit2.GitError, KeyError):
        raise GitError(f"no repository at {path.name}") from None


def branch_head(path: Path, branch: str) -> str | None:
    repo = open_repo(path)
    ref = repo.references.get(f"refs/heads/{branch}")
    return str(ref.target) if ref is not None else None


def commit_info(path: Path, sha: str) -> CommitInfo:
    commit = open_repo(path).get(sha)
    if not isinstance(commit, pygit2.Commit):
        raise GitError(f"{sha} is not a commit")
    tz = timezone.utc
    return CommitInfo(sha=str(commit.id), author=commit.author.name, email=commit.author.email,
                      message=commit.message.strip(),
                      date=datetime.fromtimestamp(commit.commit_time, tz))


def new_commits(path: Path, old: str, new: str, limit: int = 50) -> list[CommitInfo]:
    """Commits reachable from new but not from old, newest first (a new branch: its last
    `limit` commits)."""
    repo = open_repo(path)
    walker = repo.walk(pygit2.Oid(hex=new), pygit2.GIT_SORT_TOPOLOGICAL)
    if old != ZERO:
        walker.hide(pygit2.Oid(hex=old))
    commits = []
    for commit in walker:
        commits.append(commit_info(path, str(commit.id)))
        if len(commits) >= limit:
            break
    return commits


def read_file(path: Path, sha: str, name: str) -> bytes | None:
    """A file's bytes at a commit, or None when it is not there."""
    tree = open_repo(path).get(sha).tree
    try:
        entry = tree[name]
    except KeyError:
        return None
    blob = open_repo(path).get(entry.id)
    return blob.data if isinstance(blob, pygit2.Blob) else None


def export_tree(path: Path, sha: str, dest: Path, *, group: int | None = None) -> int:
    """Write the files of a commit into dest (a new folder). Returns the number of files.

    Blobs are streamed to disk, never held whole in memory; a symlink that is absolute or
    leads out of the tree (through other links too) refuses the whole checkout with
    UnsafeTree and nothing is written. With a group, the checkout is 0750 (files 0640)
    in that group: give the build containers' gid. Submodules are skipped for now."""
    commit = open_repo(path).get(sha)
    if not isinstance(commit, pygit2.Commit):
        raise GitError(f"{sha} is not a commit")
    return checkout.export_tree(path, str(commit.id), dest, group)


def ensure_odoo_source(source: str, ref: str, dest: Path) -> Path:
    """The Odoo source tree for a version: a local tree is used in place; a git URL is
    cloned once (shallow, at `ref`) into dest. Safe to call concurrently."""
    local = Path(source)
    if local.is_absolute() or source.startswith("."):
        if not (local / "odoo-bin").exists():
            raise ConfigError(f"{source} is not an Odoo source tree (no odoo-bin in it)")
        return local.resolve()
    with _source_lock:
        if (dest / "odoo-bin").exists():
            return dest
        partial = dest.with_name(dest.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=False)
        partial.parent.mkdir(parents=True, exist_ok=True)
        log.info("cloning Odoo %s from %s", ref, source)
        try:
            subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", ref,
                            "--single-branch", source, str(partial)],
                           check=True, capture_output=True, text=True, timeout=CLONE_TIMEOUT)
        except subprocess.CalledProcessError as exc:
            raise SystemFailure(f"cannot clone Odoo {ref} from {source}: "
                                f"{exc.stderr.strip().splitlines()[-1:]}") from None
        except subprocess.TimeoutExpired:
            raise SystemFailure(f"cloning Odoo {ref} from {source} timed out") from None
        partial.rename(dest)
        return dest


@dataclass
class MergeOutcome:
    kind: str                      # "fast-forward", "merge", "up-to-date" or "conflict"
    commit: str | None = None
    conflicts: list[str] | None = None
    previous: str | None = None    # where the target pointed before


def merge_branches(path: Path, source: str, target: str, *, author: str,
                   email: str) -> MergeOutcome:
    """Merge branch source into branch target in a bare repository. A conflict changes
    nothing and names the conflicting files. The target's ref moves only if it still
    points where it did when the merge started (a push meanwhile makes this refuse)."""
    repo = open_repo(path)
    source_ref = repo.references.get(f"refs/heads/{source}")
    target_ref = repo.references.get(f"refs/heads/{target}")
    if source_ref is None or target_ref is None:
        raise GitError(f"no branch {source if source_ref is None else target!r}")
    ours, theirs = target_ref.target, source_ref.target
    base = repo.merge_base(ours, theirs)
    if base == theirs:
        return MergeOutcome("up-to-date", str(ours))
    if base == ours:
        _move_ref(repo, target, ours, theirs, f"fast-forward to {source}")
        return MergeOutcome("fast-forward", str(theirs), previous=str(ours))
    index = repo.merge_commits(ours, theirs)
    if index.conflicts is not None:
        files = sorted({(entry[1] or entry[2] or entry[0]).path
                        for entry in index.conflicts if any(entry)})
        return MergeOutcome("conflict", conflicts=files)
    tree = index.write_tree(repo)
    signature = pygit2.Signature(author, email)
    commit = repo.create_commit(None, signature, signature,
                                f"Merge branch '{source}' into {target}\n", tree,
                                [ours, theirs])
    _move_ref(repo, target, ours, commit, f"merge {source}")
    return MergeOutcome("merge", str(commit), previous=str(ours))


def _move_ref(repo, branch: str, expected, new, message: str) -> None:
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None or ref.target != expected:
        raise GitError(f"{branch} moved while merging: try again")
    ref.set_target(new, message)


def repo_size(path: Path) -> int:
    """Bytes the files of a repository take (objects, packs, refs)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # a pack git just replaced
                continue
    return total


def push_allowance(path: Path, incoming: int | None, *, max_push: int, quota: int) -> int:
    """Bytes a push may still bring into the repository at path, for git's
    receive.maxInputSize. GitError, to show the pusher, when `incoming` (the request's
    length, when known) is over the per-push limit or over what the quota has left."""
    def size(n: int) -> str:
        return f"{n / MiB:.1f} MiB"

    if incoming is not None and incoming > max_push:
        raise GitError(f"push refused: it is {size(incoming)}, more than the {size(max_push)} "
                       "one push may bring ([git] max_push_bytes).\nPush fewer commits at a "
                       "time, or keep large files out of the repository. Nothing was changed.")
    used = repo_size(path)
    if used + (incoming or 1) > quota:
        raise GitError(f"push refused: the repository holds {size(used)}; this push "
                       f"({size(incoming or 0)}) would take it past its quota of {size(quota)} "
                       "([git] repository_quota). Nothing was changed.")
    return min(max_push, quota - used)


def read_push_commands(stream) -> tuple[list[bytes], set[bytes]]:
    """The refs a receive-pack request updates and the capabilities it asks for, read
    from the start of its body (pkt-lines up to the first flush)."""
    refs, caps, seen = [], set(), 0
    while seen < COMMANDS_READ_LIMIT:
        head = stream.read(4)
        try:
            length = int(head, 16)
        except ValueError:
            break
        if length < 4:  # a flush (0000) ends the commands
            break
        line = stream.read(length - 4)
        seen += length
        line, _, wanted = line.rstrip(b"\n").partition(b"\0")
        caps.update(wanted.split())
        parts = line.split(b" ")
        if len(parts) == 3 and all(re.fullmatch(rb"[0-9a-f]{40,64}", p) for p in parts[:2]):
            refs.append(parts[2])
    return refs, caps


def pkt_line(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def refusal(refs: list[bytes], caps: set[bytes], message: str) -> bytes:
    """The answer of a receive-pack that refuses every ref of a push: the message shown
    to the pusher as `remote:` lines (on side band 2), each ref rejected."""
    status = pkt_line(b"unpack ok\n") + b"".join(
        pkt_line(b"ng %s push refused\n" % ref) for ref in refs) + b"0000"
    if not caps & {b"side-band-64k", b"side-band"}:
        return status
    band = 65515 if b"side-band-64k" in caps else 995
    lines = b"".join(pkt_line(b"\2" + line.encode() + b"\n") for line in message.splitlines())
    chunks = b"".join(pkt_line(b"\1" + status[i:i + band])
                      for i in range(0, len(status), band))
    return lines + chunks + b"0000"
