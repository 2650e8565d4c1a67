"""Git: the projects' bare repositories (pygit2), their hooks, and Odoo source trees."""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pygit2

from appliance.errors import ConfigError, GitError, SystemFailure

log = logging.getLogger(__name__)

# Branch names we build: letters, digits and . _ / -, no leading '-' or '.', no '..',
# at most 100 characters. Git already refuses spaces and '..'; we refuse shell and URL
# metacharacters too, since names end up in container names, paths and page addresses.
BRANCH_NAME = re.compile(r"^(?!.*\.\.)(?!.*//)(?![-./])[A-Za-z0-9._/-]{1,100}(?<![./])$")
ZERO = "0" * 40
HOOKS = ("pre-receive", "post-receive")
# A shallow clone of Odoo is about 400 MB; on a slow line that takes a while.
CLONE_TIMEOUT = 3600
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
    """A bare repository whose hooks come only from the appliance's own folder."""
    if path.exists():
        raise GitError(f"a repository already exists at {path.name}")
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    configure_repo(repo, hooks_dir)


def configure_repo(repo: pygit2.Repository, hooks_dir: Path) -> None:
    repo.config["core.hooksPath"] = str(hooks_dir)
    repo.config["http.receivepack"] = True
    repo.config["receive.fsckObjects"] = True


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


def export_tree(path: Path, sha: str, dest: Path) -> int:
    """Write the files of a commit into dest (a new folder). Returns the number of files.

    Submodules (gitlinks) are skipped for now; symlinks are written as links only when
    they point inside the tree, so a pushed link cannot expose the host."""
    repo = open_repo(path)
    commit = repo.get(sha)
    if not isinstance(commit, pygit2.Commit):
        raise GitError(f"{sha} is not a commit")
    dest.mkdir(parents=True)
    return _export(repo, commit.tree, dest, dest.resolve())


def _export(repo, tree, folder: Path, root: Path) -> int:
    count = 0
    for entry in tree:
        target = folder / entry.name
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            target.mkdir()
            count += _export(repo, repo.get(entry.id), target, root)
        elif entry.filemode == pygit2.GIT_FILEMODE_LINK:
            link = repo.get(entry.id).data.decode(errors="replace")
            if (target.parent / link).resolve().is_relative_to(root):
                os.symlink(link, target)
        elif entry.filemode in (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE):
            target.write_bytes(repo.get(entry.id).data)
            if entry.filemode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE:
                target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            count += 1
    return count


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
