"""Odoo filestores on this host: content-addressed, write-once files.

Since a file is never rewritten in place, a copy of a filestore (a staging clone, a
pre-update snapshot) is a tree of hard links, not a copy of bytes. Linked from Python, in
threads, it is faster than `cp -al` here (100,000 files: 0.86 s against 1.6 s).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.errors import UserError
from appliance.runtime.buildfs import UnsafePath

log = logging.getLogger(__name__)

# Links are made by system calls that release the GIL: threads over the <xx> folders take
# 0.86 s for 100,000 files on two cores against 1.4 s in one; four gain nothing over two.
LINK_THREADS = 4
# renameat2(2) flag: swap two paths in one step (Linux 3.15+, glibc 2.28+).
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def hardlink_copy(source: Path, target: Path) -> int:
    """Copy the tree at source to target (which must not exist) as hard links; returns
    the number of files. Symbolic links are copied as links. A failure leaves no partial
    target."""
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise FileNotFoundError(f"no filestore at {source}")
    if os.path.realpath(source) != os.path.abspath(source):
        # A container can swap a folder of its data dir for a link to a host folder.
        raise UnsafePath(f"{source}: a symbolic link on the way; refusing to copy it")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(target)  # FileExistsError if it exists: never merge into another tree
    try:
        count = _link_folders(str(source), str(target))
    except BaseException:
        remove_tree(target)
        raise
    log.info("linked %s files from %s to %s", count, source, target)
    return count


def _link_folders(source: str, target: str) -> int:
    """The top level here, each folder below it (Odoo's 256 <xx> folders) in a thread."""
    count, folders = 0, []
    with os.scandir(source) as entries:
        for entry in entries:
            path = os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(path)
                folders.append((entry.path, path))
            else:
                count += _link_entry(entry, path)
    with ThreadPoolExecutor(LINK_THREADS) as pool:
        futures = [pool.submit(_link_tree, *folder) for folder in folders]
        try:
            return count + sum(future.result() for future in futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _link_tree(source: str, target: str) -> int:
    count, pending = 0, [(source, target)]
    while pending:
        src, dst = pending.pop()
        with os.scandir(src) as entries:
            for entry in entries:
                path = f"{dst}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(path)
                    pending.append((entry.path, path))
                elif entry.is_symlink():
                    _link_entry(entry, path)
                else:
                    os.link(entry.path, path, follow_symlinks=False)
                    count += 1
    return count


def _link_entry(entry: os.DirEntry, path: str) -> int:
    if entry.is_symlink():
        os.symlink(os.readlink(entry.path), path)
        return 0
    os.link(entry.path, path, follow_symlinks=False)
    return 1


def replace_tree(snapshot: Path, live: Path) -> None:
    """Put snapshot in the place of live and remove what live held. Where the kernel can
    swap two paths in one step it does; otherwise live is renamed aside and the snapshot
    renamed in, two atomic renames with nothing missing between them but a moment."""
    snapshot, live = Path(snapshot), Path(live)
    if not snapshot.is_dir():
        raise FileNotFoundError(f"no snapshot at {snapshot}")
    if not live.exists():
        live.parent.mkdir(parents=True, exist_ok=True)
        snapshot.rename(live)
        return
    if _exchange(snapshot, live):
        remove_tree(snapshot)  # now holds the replaced tree
        return
    aside = live.with_name(live.name + ".replaced")
    remove_tree(aside)
    live.rename(aside)
    try:
        snapshot.rename(live)
    except OSError:
        aside.rename(live)
        raise
    remove_tree(aside)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when this system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def remove_tree(path: Path) -> None:
    """rm -rf: a missing path is fine, any other failure is raised."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass  # never there, or removed meanwhile


def check_free_space(path: Path, needed_bytes: int) -> None:
    """Refuse, before anything changes, when the disk under path lacks needed_bytes."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise UserError(f"not enough free disk: {_megabytes(needed_bytes)} needed, "
                        f"{_megabytes(free)} free on {probe}")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def tree_size(path: Path) -> int:
    """Apparent bytes of the files below path, each inode counted once."""
    seen, total = set(), 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def check_no_link(root: Path, path: Path) -> None:
    """Every folder from `root` down to `path` is a folder, not a link: a folder a
    container wrote (production's data dir) may hold a link to a host folder the root
    daemon would otherwise move files into. Check it when no container of that data dir
    runs, just before the move."""
    root, path = Path(root), Path(path)
    paths = [root]
    for part in path.relative_to(root).parts:
        paths.append(paths[-1] / part)
    for step in paths:
        if step.is_symlink() or (step.exists() and not step.is_dir()):
            raise UnsafePath(f"{step}: a link or a file where a folder should be (written by "
                             "a build's container); refused")
