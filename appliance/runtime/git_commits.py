"""Commits made on the appliance (pygit2): the online editor's changes on top of a branch.

The commit's parent is the branch's current head and its tree is that head's tree with
the edited files replaced, each keeping its mode there. The edits were made on the
files of an older commit (the build's) when the branch has moved since: that is fine
when the commits in between touched other files, and refused (naming the files) when
they touched one of the edited ones, as git itself would need a merge. The branch's ref
moves only if it still points where it did when the commit was made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2

from appliance.errors import GitError
from appliance.runtime.git import open_repo

log = logging.getLogger(__name__)

# Regular files, as git records them (a link or a submodule is never edited).
FILE_MODES = (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE)


@dataclass(frozen=True)
class Committed:
    sha: str
    previous: str   # the branch's head it was made on


def changed_between(path: Path, old: str, new: str) -> set[str]:
    """The paths whose content or mode differ between two commits (renames count as a
    deletion and an addition)."""
    repo = open_repo(path)
    diff = repo.diff(_commit(repo, old).tree, _commit(repo, new).tree)
    found = set()
    for patch_delta in diff.deltas:
        found.add(patch_delta.old_file.path)
        found.add(patch_delta.new_file.path)
    return found


def commit_files(path: Path, branch: str, base: str, files: Mapping[str, bytes], *,
                 author: str, email: str, message: str) -> Committed:
    """Commit `files` (path -> new bytes), edited on the files of commit `base`, on top
    of the branch's head. GitError (nothing changed) when the branch is gone, when it
    moved since base and the commits since touched one of these files, when a file is
    not a regular file there, or when nothing would change."""
    if not files:
        raise GitError("nothing to commit: no file differs from the build's commit")
    text = _message(message)
    repo = open_repo(path)
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        raise GitError(f"branch {branch!r} is gone: nothing was committed")
    head = _commit(repo, str(ref.target))
    if str(head.id) != base:
        clashes = sorted(set(files) & changed_between(path, base, str(head.id)))
        if clashes:
            raise GitError(
                f"{branch} has moved since this build's commit ({base[:8]}, now "
                f"{str(head.id)[:8]}) and these files changed there too: "
                f"{', '.join(clashes)}. Nothing was committed: open the editor on the "
                "branch's latest build and make the change there")
    index = pygit2.Index()
    index.read_tree(head.tree)
    for name, data in sorted(files.items()):
        entry = index[name] if name in index else None
        if entry is None or entry.mode not in FILE_MODES:
            raise GitError(f"{name} is not a file of {branch}: nothing was committed")
        index.add(pygit2.IndexEntry(name, repo.create_blob(data), entry.mode))
    tree = index.write_tree(repo)
    if tree == head.tree.id:
        raise GitError(f"nothing to commit: {branch} already has these changes")
    signature = pygit2.Signature(author, email)
    sha = repo.create_commit(None, signature, signature, text, tree, [head.id])
    current = repo.references.get(f"refs/heads/{branch}")
    if current is None or current.target != head.id:
        raise GitError(f"{branch} moved while committing: nothing was committed; try again")
    current.set_target(sha, f"commit from the editor by {author}")
    log.info("commit %s on %s by %s: %s", sha, branch, author, ", ".join(sorted(files)))
    return Committed(str(sha), str(head.id))


def _commit(repo: pygit2.Repository, sha: str) -> pygit2.Commit:
    try:
        found = repo.get(sha)
    except ValueError:
        found = None
    if not isinstance(found, pygit2.Commit):
        raise GitError(f"{sha} is not a commit of this repository")
    return found


def _message(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if not text:
        raise GitError("a commit needs a message")
    return text + "\n"
