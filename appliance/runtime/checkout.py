"""Writing a commit's files into a folder: streamed from git, its symlinks kept inside.

Blobs come from `git cat-file --batch`, which streams a blob from the object store to a
pipe; they are copied to disk a chunk at a time, so a large file never sits whole in the
daemon's memory. (libgit2, behind pygit2, inflates a whole object in memory before
handing out any of it, BlobIO of newer pygit2 included; and this runs the same with
Debian 12's pygit2 1.11.)

Every symlink is resolved against the tree itself before anything is written, following
the tree's other links as the kernel would (`d/../z/..` where `d` is a link climbs from
where `d` leads, not from `d`). One that is absolute or leads out of the tree refuses the
whole checkout (UnsafeTree), naming the link and its target.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import SystemFailure, UnsafeTree

log = logging.getLogger(__name__)

# Bytes copied from git to a file at a time.
CHUNK = 1024 * 1024
# Links followed while resolving one path before it counts as a loop (Linux: 40).
MAX_LINK_HOPS = 40
# Longest link target Linux accepts (PATH_MAX less its NUL).
MAX_LINK_TARGET = 4095
# Packed blobs above this are streamed by git itself too, instead of inflated in its
# memory first (git's default is 512 MiB).
GIT_BIG_FILE_THRESHOLD = "1m"
# Git modes of tree entries, as `git ls-tree` writes them.
KINDS = {"040000": "tree", "100644": "file", "100664": "file", "100755": "exec",
         "120000": "link", "160000": "submodule"}  # 100664: made by git before 2005


@dataclass
class Entry:
    path: str
    kind: str
    oid: str
    size: int


def resolve_link(path: str, links: Mapping[str, str]) -> str:
    """Where the symlink at `path` leads (a path relative to the tree's root, "" for the
    root itself), following the tree's links met on the way. UnsafeTree when it is
    absolute, empty, leads out of the tree at any point, or loops."""
    chain = [(path, links[path])]
    parts = path.split("/")[:-1]
    pending = _target_parts(chain)
    hops = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                raise _unsafe(chain, "leads out of the checkout")
            parts.pop()
            continue
        parts.append(name)
        here = "/".join(parts)
        if here in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _unsafe(chain[:3], f"is a loop of links (or a chain of more than "
                                         f"{MAX_LINK_HOPS})")
            chain.append((here, links[here]))
            parts.pop()
            pending = _target_parts(chain) + pending
    return "/".join(parts)


def _target_parts(chain: list[tuple[str, str]]) -> list[str]:
    target = chain[-1][1]
    if not target:
        raise _unsafe(chain, "has an empty target")
    if target.startswith("/"):
        raise _unsafe(chain, "points outside the checkout: an absolute path")
    if "\0" in target or len(os.fsencode(target)) > MAX_LINK_TARGET:
        raise _unsafe(chain, "has a target no file system accepts")
    return target.split("/")


def _unsafe(chain: list[tuple[str, str]], why: str) -> UnsafeTree:
    path, target = chain[0]
    through = ", ".join(f"{p!r} -> {t!r}" for p, t in chain[1:])
    return UnsafeTree(f"symlink {path!r} -> {target!r} {why}"
                      + (f" (through {through})" if through else "")
                      + ": the checkout is refused")


def check_links(links: Mapping[str, str]) -> None:
    """Refuse (UnsafeTree) the first link, in path order, that does not stay inside."""
    for path in sorted(links):
        resolve_link(path, links)


def export_tree(repo: Path, commit: str, dest: Path, group: int | None = None) -> int:
    """Write the files of `commit` (a full id) into dest, a new folder; return the number
    of files. With a group: folders and executables 0750, files 0640, in that group (so
    a build container's user reads them and nobody else); without: readable by all.
    Submodules are skipped. Nothing is left in dest when it fails."""
    entries = list_tree(repo, commit)
    with _Blobs(repo) as blobs:
        links = {e.path: _link_target(blobs, e) for e in entries if e.kind == "link"}
        check_links(links)
        dest.mkdir(parents=True)
        try:
            return _write(blobs, entries, links, dest, group)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise


def _write(blobs, entries: list[Entry], links: dict[str, str], dest: Path,
           group: int | None) -> int:
    folder_mode, file_mode = (0o750, 0o640) if group is not None else (0o755, 0o644)
    _own(dest, folder_mode, group)
    count = 0
    for entry in entries:  # folders come before what they hold
        path = dest / entry.path
        if entry.kind == "tree":
            os.mkdir(path, 0o700)
            _own(path, folder_mode, group)
        elif entry.kind in ("file", "exec"):
            mode = folder_mode if entry.kind == "exec" else file_mode
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                blobs.copy(entry.oid, fd)
                _own(fd, mode, group)
            finally:
                os.close(fd)
            count += 1
    for path, target in links.items():  # last: no file is ever written through a link
        os.symlink(target, dest / path)
        if group is not None and os.lstat(dest / path).st_gid != group:
            os.lchown(dest / path, -1, group)
    return count


def _own(what, mode: int, group: int | None) -> None:
    """Set the mode (and group) of a path or of an open file descriptor. The group is
    only changed when it differs: a daemon not running as root may only give its own."""
    os.chmod(what, mode)
    if group is not None and os.stat(what).st_gid != group:
        os.chown(what, -1, group)


def list_tree(repo: Path, commit: str) -> list[Entry]:
    """Every entry of the commit's tree, folders before their content."""
    out = subprocess.run(_git(repo, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit),
                         capture_output=True, env=_env(), check=False)
    if out.returncode != 0:
        raise SystemFailure(f"git ls-tree {commit} failed: "
                            f"{out.stderr.decode(errors='replace').strip()[-300:]}")
    entries = []
    for record in out.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _, oid, size = meta.decode().split(maxsplit=3)
        path = os.fsdecode(raw_path)
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise UnsafeTree(f"the tree holds a path git itself refuses: {path!r}")
        kind = KINDS.get(mode)
        if kind is None:
            raise UnsafeTree(f"{path!r} has a mode git does not make: {mode}")
        if kind != "submodule":
            entries.append(Entry(path, kind, oid, 0 if size == "-" else int(size)))
    return entries


def _link_target(blobs, entry: Entry) -> str:
    if entry.size > MAX_LINK_TARGET:
        raise UnsafeTree(f"symlink {entry.path!r} has a target of {entry.size} bytes: "
                         "the checkout is refused")
    return os.fsdecode(blobs.read(entry.oid))


class _Blobs:
    """One `git cat-file --batch` for a checkout: blobs asked for by id, one at a time."""

    def __init__(self, repo: Path):
        self.process = subprocess.Popen(
            _git(repo, "-c", f"core.bigFileThreshold={GIT_BIG_FILE_THRESHOLD}",
                 "cat-file", "--batch"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_env())

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.stdin.close()
        self.process.stdout.close()
        if self.process.wait(timeout=30) != 0 and exc_info[0] is None:
            raise SystemFailure(f"git cat-file exited with {self.process.returncode}")

    def _ask(self, oid: str) -> int:
        self.process.stdin.write(f"{oid}\n".encode())
        self.process.stdin.flush()
        header = self.process.stdout.readline().decode(errors="replace").split()
        if len(header) != 3 or header[1] != "blob":
            raise SystemFailure(f"git cat-file gave no blob for {oid}: {' '.join(header)}")
        return int(header[2])

    def copy(self, oid: str, fd: int) -> None:
        left = self._ask(oid)
        while left:
            chunk = self.process.stdout.read(min(CHUNK, left))
            if not chunk:
                raise SystemFailure(f"git cat-file stopped in the middle of {oid}")
            _write_all(fd, chunk)
            left -= len(chunk)
        self.process.stdout.read(1)  # the newline after each object

    def read(self, oid: str) -> bytes:
        data = self.process.stdout.read(self._ask(oid))
        self.process.stdout.read(1)
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _git(repo: Path, *args: str) -> list[str]:
    return [shutil.which("git") or "git", f"--git-dir={repo}", *args]


def _env() -> dict[str, str]:
    """No system or user configuration: only the repository's own, which the appliance
    writes."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "HOME": os.devnull, "LC_ALL": "C"}
