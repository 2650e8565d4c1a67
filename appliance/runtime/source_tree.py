"""A build's source tree as the online editor sees it: paths that cannot leave it, files
read and written without following links.

A path comes from a browser. It is taken apart by `parse`, which refuses anything but
plain names separated by "/": no "." or "..", no absolute path, no backslash, no NUL or
other control character, and no "%" at all (the query string was decoded once already:
a "%" left is an encoded form, "%2e%2e%2f" sent twice encoded, and nothing in an addon
is named so). What survives is then walked one name at a time from a descriptor of the
tree's root, each folder opened with O_NOFOLLOW relative to the one before (as
runtime.buildfs does), so a symbolic link anywhere on the way is refused, never
followed, even if one were swapped in between two requests. The final file must be a
regular file with no other hard link (git never makes one; one to a file outside the
tree would read or write that file).

The tree is the daemon's (builds/<id>/src, mounted read-only into the build's
containers), but nothing here relies on that: a write goes to a new temporary file in
the same folder, through the folder's descriptor, which then replaces the file by
rename (atomic, keeping the file's mode and group), so a reader never sees half a file
and a link put in the file's place is replaced, not written through.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import NotFound, UserError

log = logging.getLogger(__name__)

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Linux's limits: a whole path (PATH_MAX less its NUL) and one name (NAME_MAX), in bytes.
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
# A folder's listing stops here: a tree is for finding files, not for 50,000 fixtures.
MAX_LISTED = 2000
# Bytes looked at to tell a binary file (a NUL among them) from text.
SNIFF_BYTES = 8192
# Files being written are named so (a fixed length, whatever the file's name).
TEMPORARY_PREFIX = ".editor-"


class BadPath(UserError):
    """A path that is not a plain path inside the tree, or leads through a link."""


class Changed(UserError):
    """The file changed since it was opened: nothing was written."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: str   # from the tree's root, "/"-separated
    kind: str   # "folder", "file", "link" or "other" (FIFO, socket, device)
    size: int


@dataclass(frozen=True)
class FileView:
    path: str
    size: int
    kind: str          # "text", "binary" or "big"
    text: str | None   # the content, for "text" only
    digest: str        # sha256 of the bytes read ("" for "big"): what a save must find


def parse(raw: str | None) -> tuple[str, ...]:
    """The names of a relative path ("" or None: the root, ()); BadPath otherwise."""
    if raw is None or raw == "":
        return ()
    if not isinstance(raw, str):
        raise BadPath("a path must be text")
    if raw.startswith("/"):
        raise BadPath("an absolute path is refused: paths are relative to the source tree")
    if "\\" in raw:
        raise BadPath("a backslash is refused in a path: separate folders with /")
    if "%" in raw:
        raise BadPath("an encoded path (with %) is refused: send the plain path, encoded once")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise BadPath("a control character (NUL, line break...) is refused in a path")
    try:
        encoded = raw.encode("utf-8")
    except UnicodeError:
        raise BadPath("a path must be valid text") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise BadPath(f"a path is at most {MAX_PATH_BYTES} bytes")
    parts = tuple(raw.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise BadPath("'.', '..' and empty names are refused in a path")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise BadPath(f"a name is at most {MAX_NAME_BYTES} bytes")
    return parts


def joined(parts: Iterable[str]) -> str:
    return "/".join(parts)


def _refuse(parts, exc: OSError):
    """Turn what the kernel said about a walk into the editor's errors."""
    shown = joined(parts) or "/"
    if exc.errno == errno.ENOENT:
        raise NotFound(f"no {shown} in this build's source") from None
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        raise BadPath(f"{shown}: a symbolic link or a file on the way; refused") from None
    raise exc


def open_folder(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of root/parts, each folder opened relative to the one before it
    with O_NOFOLLOW. The caller closes it."""
    try:
        current = os.open(root, _FOLDER)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFound("this build's source is gone (collected, or not checked out "
                           "yet)") from None
        raise
    for index, part in enumerate(parts):
        try:
            following = os.open(part, _FOLDER, dir_fd=current)
        except OSError as exc:
            os.close(current)
            _refuse(parts[:index + 1], exc)
        os.close(current)
        current = following
    return current


def _open_file(folder: int, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
    """The regular file parts[-1] in the open folder, not through a link (no FIFO can
    block the open)."""
    try:
        fd = os.open(parts[-1], _FILE, dir_fd=folder)
    except OSError as exc:
        _refuse(parts, exc)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise BadPath(f"{joined(parts)}: {kind}; not opened as a file")
    if info.st_nlink > 1:
        # git never makes one, and one to a file outside would read or write it there.
        os.close(fd)
        raise BadPath(f"{joined(parts)}: the file has other hard links; refused")
    os.set_blocking(fd, True)
    return fd, info


def kind_of(root: Path, parts: tuple[str, ...]) -> str:
    """"folder", "file", "link" or "other" for what parts names (NotFound if nothing)."""
    if not parts:
        os.close(open_folder(root, ()))
        return "folder"
    folder = open_folder(root, parts[:-1])
    try:
        info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
    except OSError as exc:
        _refuse(parts, exc)
    finally:
        os.close(folder)
    return _kind(info.st_mode)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "link" if stat.S_ISLNK(mode) else "other"


def list_folder(root: Path, parts: tuple[str, ...]) -> tuple[list[Entry], bool]:
    """The folder's entries, folders first, each by name; and whether the listing was
    cut at MAX_LISTED. Links are listed as links, never followed."""
    folder = open_folder(root, parts)
    entries: list[Entry] = []
    cut = False
    try:
        with os.scandir(folder) as found:
            for item in found:
                if len(entries) >= MAX_LISTED:
                    cut = True
                    break
                info = item.stat(follow_symlinks=False)
                entries.append(Entry(name=item.name, path=joined((*parts, item.name)),
                                     kind=_kind(info.st_mode), size=info.st_size))
    finally:
        os.close(folder)
    entries.sort(key=lambda e: (e.kind != "folder", e.name.lower(), e.name))
    return entries, cut


def read(root: Path, parts: tuple[str, ...], max_bytes: int) -> FileView:
    """The file, as text when it is UTF-8 text of at most max_bytes; else what it is."""
    size, data = _load(root, parts, max_bytes)
    if data is None:
        return FileView(joined(parts), size, "big", None, "")
    digest = hashlib.sha256(data).hexdigest()
    if b"\0" in data[:SNIFF_BYTES]:
        return FileView(joined(parts), size, "binary", None, digest)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return FileView(joined(parts), size, "binary", None, digest)
    return FileView(joined(parts), size, "text", text, digest)


def _load(root: Path, parts: tuple[str, ...], max_bytes: int) -> tuple[int, bytes | None]:
    """The file's size and bytes (None when over max_bytes: not read)."""
    if not parts:
        raise BadPath("the source tree's root is a folder, not a file")
    folder = open_folder(root, parts[:-1])
    try:
        fd, info = _open_file(folder, parts)
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            return info.st_size, None
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew since fstat
        return len(data), None
    return len(data), data


def write(root: Path, parts: tuple[str, ...], data: bytes, expected_digest: str | None) -> str:
    """Replace an existing regular file with data, atomically, keeping its mode and
    group; returns the new content's digest. Refused (nothing written): a link or a
    special file, a file with another hard link, one that is not there (the editor
    changes files, it does not create them), one whose content is no longer what was
    read (`expected_digest`, when given)."""
    if not parts:
        raise BadPath("the source tree's root is a folder, not a file")
    folder = open_folder(root, parts[:-1])
    try:
        fd, info = _open_file(folder, parts)
        with os.fdopen(fd, "rb") as handle:
            if expected_digest is not None:
                current = hashlib.sha256(handle.read()).hexdigest()
                if not secrets.compare_digest(current, expected_digest):
                    raise Changed(f"{joined(parts)} changed since you opened it (saved from "
                                  "another tab?): nothing was written; open it again")
        _replace(folder, parts[-1], data, info)
    finally:
        os.close(folder)
    return hashlib.sha256(data).hexdigest()


def _replace(folder: int, name: str, data: bytes, was: os.stat_result) -> None:
    temporary = f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=folder)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, stat.S_IMODE(was.st_mode))
            if os.fstat(fd).st_gid != was.st_gid:
                _give_group(fd, was.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=folder)
        except FileNotFoundError:
            pass
        raise
    os.fsync(folder)


def _give_group(fd: int, gid: int) -> None:
    """The file's group as it was (the build containers' group reads through it)."""
    try:
        os.fchown(fd, -1, gid)
    except PermissionError:
        log.warning("could not keep group %s on an edited file: not this user's group", gid)


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob of these bytes (SHA-1 object format)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def changed_files(root: Path, tracked: Iterable[tuple[str, int, str]],
                  max_bytes: int) -> dict[str, bytes]:
    """The files whose content differs from what git has: `tracked` gives (path, size,
    blob id) of the commit's regular files; returns path -> the bytes on disk. Files
    over max_bytes are skipped (the editor never writes one), so are files missing or
    reached through a link (the editor never makes one)."""
    changed = {}
    for path, size, blob in tracked:
        if size > max_bytes:
            continue
        try:
            _size, data = _load(root, parse(path), max_bytes)
        except (NotFound, BadPath):
            continue
        if data is not None and (len(data) != size or git_blob_id(data) != blob):
            changed[path] = data
    return changed
