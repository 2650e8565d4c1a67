"""Files in build folders, opened the one way that is safe when a container can write there.

A build container runs whatever its branch holds, and it can replace any file in a folder
it may write (Odoo's data dir, its server log folder) with a symbolic link to a path of
the host, a FIFO or a hard link. The daemon runs with more rights than the container, so
it opens such files only through this module: the path is walked from a folder the
daemon owns, one component at a time relative to the previous folder's descriptor with
O_NOFOLLOW (RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS of openat2, done by hand), `..` and
absolute parts are refused, and the final file must be a regular file. A FIFO cannot
block the open (O_NONBLOCK). Folders the daemon itself keeps (a build's `logs/`) are
written through here too, so there is one rule and one place to read it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from appliance.errors import ApplianceError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ApplianceError):
    """A path in a build folder is a symbolic link, a special file or leaves the folder."""


def _parts(relative: str | PurePosixPath) -> list[str]:
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts:
        raise UnsafePath(f"{relative}: not a path inside the build folder")
    if any(part in ("..", ".") for part in path.parts):
        raise UnsafePath(f"{relative}: '.' and '..' are not allowed")
    return list(path.parts)


def _refuse(relative, exc: OSError):
    # O_NOFOLLOW on a symbolic link fails with ELOOP; O_DIRECTORY on a file with ENOTDIR.
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        raise UnsafePath(f"{relative}: a symbolic link or not a folder on the way; "
                         "refused") from None
    raise exc


def open_fd(root: Path, relative: str | PurePosixPath, flags: int, mode: int = 0o640) -> int:
    """A descriptor of root/relative opened with `flags`, never through a symbolic link,
    and only when it is a regular file. Missing folders are not created."""
    parts = _parts(relative)
    current = os.open(root, _DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                following = os.open(part, _DIRECTORY, dir_fd=current)
            except OSError as exc:
                _refuse(relative, exc)
            os.close(current)
            current = following
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         mode, dir_fd=current)
        except OSError as exc:
            _refuse(relative, exc)
    finally:
        os.close(current)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath(f"{relative}: not a regular file; refused")
    os.set_blocking(fd, True)
    return fd


def open_read(root: Path, relative: str | PurePosixPath):
    """The file for reading in binary; FileNotFoundError when it is not there."""
    return os.fdopen(open_fd(root, relative, os.O_RDONLY), "rb")


def open_path(path: Path):
    """The file at path for reading in binary, its folder trusted, the file itself not:
    FileNotFoundError when it is missing, UnsafePath when it is not a plain file."""
    return open_read(path.parent, path.name)


def open_append(root: Path, relative: str | PurePosixPath):
    """The file for appending text, created (0640) when missing."""
    fd = open_fd(root, relative, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8", errors="replace")


def read_text(root: Path, relative: str | PurePosixPath) -> str:
    """The file's text, or "" when it is not there."""
    try:
        with open_read(root, relative) as handle:
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def exists(root: Path, relative: str | PurePosixPath) -> bool:
    """Whether root/relative is a regular file reached without a symbolic link."""
    try:
        os.close(open_fd(root, relative, os.O_RDONLY))
    except (FileNotFoundError, UnsafePath):
        return False
    return True


def make_folder(path: Path, owner: int | None, mode: int) -> None:
    """A folder owned by `owner` (when we may chown) with `mode`; an existing symbolic
    link in its place is refused, never followed."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path}: expected a folder, found something else; refused")
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, owner, follow_symlinks=False)
    fd = os.open(path, _DIRECTORY)  # O_NOFOLLOW: a link swapped in since is refused
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
