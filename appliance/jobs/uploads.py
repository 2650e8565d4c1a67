"""Files to import, received in pieces (from the browser) or fetched from a URL (the CLI).

Each upload is a folder <data_dir>/uploads/<id>/ (0700) holding one file, `data`, made
with O_EXCL and opened with O_NOFOLLOW: only the daemon writes there, and nothing in it is
followed. A piece is written at the offset the store says has arrived, under the row's
lock, so two pieces never interleave; a piece cut short is forgotten (the next one
truncates what it left). When the last byte is in, the file's sha256 is computed (and
compared with the one announced, if any). An upload is refused at its start when the
disk could not take it, less a margin, besides what the unfinished uploads still bring
(`check_room`). An upload left alone for [backup]
upload_expiry_hours is removed by the scheduler (`prune_abandoned`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from appliance import policy
from appliance.errors import SystemFailure, UserError
from appliance.store import builds as builds_store
from appliance.store import uploads as uploads_store

log = logging.getLogger(__name__)

DATA = "data"
# Free space an upload never takes: the database, builds and backups live on this disk
# too, and a load into a side database needs room of its own.
ROOM_MARGIN_BYTES = 1024 * 1024 * 1024
# A fixed key for pg_advisory_xact_lock: two uploads starting at once count the room one
# after the other.
ROOM_LOCK = 0x0DD0F1EE
# Bytes read from a request or a download at a time.
BLOCK = 1024 * 1024
# How long a download from a URL may wait for the server: to connect, then between reads.
CONNECT_SECONDS, READ_SECONDS = 15, 120


class UploadConflict(UserError):
    """A piece that does not start where the upload stands (HTTP 409); nothing changed."""

    def __init__(self, message: str, received: int):
        super().__init__(message)
        self.received = received


class UploadTooLarge(UserError):
    """More bytes than allowed or than announced (HTTP 413); nothing changed."""


class UploadNoRoom(UserError):
    """The disk cannot take the file besides the uploads under way (HTTP 507); nothing
    changed."""


def uploads_dir(cfg) -> Path:
    return cfg.paths.data_dir / "uploads"


def data_path(cfg, upload_id: str) -> Path:
    if not uploads_store.ID_PATTERN.match(upload_id):
        raise UserError("no such upload")
    return uploads_dir(cfg) / upload_id / DATA


def check_size(cfg, size: int) -> None:
    most = cfg.backup.upload_max_bytes
    if size > most:
        raise UploadTooLarge(f"the file is {size} bytes; the most this appliance takes is "
                             f"{most} bytes ([backup] upload_max_bytes)")


def free_bytes(cfg) -> int:
    """Free space on the uploads folder's filesystem (the data dir's, before any upload)."""
    probe = uploads_dir(cfg)
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_room(svc, conn, size: int) -> None:
    """Refuse (UploadNoRoom) a file of `size` bytes that would not fit in the free space,
    less ROOM_MARGIN_BYTES, besides the bytes still to come of the unfinished uploads.
    Holds, to the end of `conn`'s transaction, the lock under which uploads are counted."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROOM_LOCK,))
    promised = uploads_store.bytes_to_come(conn)
    free = free_bytes(svc.config)
    if size + promised > free - ROOM_MARGIN_BYTES:
        mb = 1024 * 1024
        raise UploadNoRoom(
            f"not enough free disk for this file: it is {size // mb} MB, uploads under way "
            f"will still bring {promised // mb} MB, and {free // mb} MB are free, of which "
            f"{ROOM_MARGIN_BYTES // mb} MB are kept for the appliance; free some space or "
            "wait for the other uploads to be imported")


def _make_folder(cfg, upload_id: str) -> Path:
    """The upload's own folder and its empty file, both new (never an existing one), the
    daemon's even when root makes them (`appliance backup import` of a URL)."""
    top = uploads_dir(cfg)
    top.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(top, 0o700, follow_symlinks=False)
    folder = top / upload_id
    os.mkdir(folder, 0o700)
    fd = os.open(folder / DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    for path in (top, folder, folder / DATA):
        _own_like_data_dir(cfg, path)
    return folder


def _own_like_data_dir(cfg, path: Path) -> None:
    if os.geteuid() != 0:
        return
    owner = os.stat(cfg.paths.data_dir)
    os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _open_data(cfg, upload_id: str, flags: int) -> int:
    """The upload's file, refusing a link or anything but a regular file in its place."""
    fd = os.open(data_path(cfg, upload_id), flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SystemFailure(f"upload {upload_id}: its data is not a regular file")
    return fd


def begin(svc, project: dict, user: dict | None, name: str, size: int,
          sha256: str | None = None) -> dict:
    """A new upload of `size` bytes; refused past the configured cap (UploadTooLarge) or
    when the disk could not take it besides the uploads under way (UploadNoRoom). The
    user's role must allow imports on some stage (the import asks again for its own)."""
    with svc.db.transaction() as conn:
        policy.require_actor(conn, user, project, "backup_restore", policy.ANY_STAGE)
    check_size(svc.config, size)
    upload_id = uploads_store.new_id()
    with svc.db.transaction() as conn:
        check_room(svc, conn, size)
        row = uploads_store.create(conn, project=project, user=user, name=name, size=size,
                                   sha256=sha256, upload_id=upload_id)
        _make_folder(svc.config, upload_id)
    log.info("upload %s of %s (%d bytes) into %s started", upload_id, row["name"], size,
             project["name"])
    return row


def append(svc, project: dict, user: dict | None, upload_id: str, offset: int,
           length: int, stream: BinaryIO) -> dict:
    """Write a piece of `length` bytes read from `stream` at `offset`; returns the row.
    UploadConflict when `offset` is not what has arrived (or the upload is complete),
    UploadTooLarge past the announced size; a stream that ends early changes nothing."""
    with svc.db.transaction() as conn:
        policy.require_actor(conn, user, project, "backup_restore", policy.ANY_STAGE)
        row = uploads_store.get(conn, upload_id, project=project, user=user, lock=True)
        if row["state"] != "receiving":
            raise UploadConflict(f"upload {upload_id} is {row['state']}", row["received"])
        if offset != row["received"]:
            raise UploadConflict(f"this piece starts at byte {offset} but {row['received']} "
                                 "bytes have arrived: send from there", row["received"])
        if offset + length > row["size"]:
            raise UploadTooLarge(f"this piece ends at byte {offset + length}, past the "
                                 f"{row['size']} bytes announced")
        _write_at(svc.config, upload_id, offset, length, stream)
        row = uploads_store.received(conn, upload_id, offset + length)
        if row["state"] == "complete":
            row = _completed(svc.config, conn, row)
    return row


def _write_at(cfg, upload_id: str, offset: int, length: int, stream: BinaryIO) -> None:
    fd = _open_data(cfg, upload_id, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)  # whatever a piece cut short left goes
        os.lseek(fd, offset, os.SEEK_SET)
        left = length
        while left:
            block = stream.read(min(BLOCK, left))
            if not block:
                raise UserError(f"the piece ended after {length - left} of {length} bytes: "
                                "send it again")
            os.write(fd, block)
            left -= len(block)
        os.fsync(fd)
    finally:
        os.close(fd)


def _completed(cfg, conn, row: dict) -> dict:
    """Every byte is in: its sha256, checked against the one announced."""
    digest = sha256_of(cfg, row["id"])
    if row["sha256"] and row["sha256"] != digest:
        raise UserError(f"the file arrived damaged (sha256 {digest}, expected "
                        f"{row['sha256']}): send the last piece again")
    conn.execute("UPDATE uploads SET sha256 = %s WHERE id = %s", (digest, row["id"]))
    log.info("upload %s of %s complete: %d bytes, sha256 %s", row["id"], row["name"],
             row["size"], digest)
    return {**row, "sha256": digest}


def sha256_of(cfg, upload_id: str) -> str:
    digest = hashlib.sha256()
    fd = _open_data(cfg, upload_id, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_url(svc, project: dict, url: str) -> dict:
    """Download `url` (http or https, verified with [runtime] ca_bundle) into a new
    upload, streamed, refused past [backup] upload_max_bytes; returns its row, complete."""
    import requests  # only the CLI's import from a URL needs it

    if not url.lower().startswith(("https://", "http://")):
        raise UserError(f"{url!r} is neither a file nor an http(s) URL")
    upload_id = uploads_store.new_id()
    folder = _make_folder(svc.config, upload_id)
    try:
        with requests.get(url, stream=True, timeout=(CONNECT_SECONDS, READ_SECONDS),
                          verify=svc.config.runtime.ca_bundle or True) as response:
            if response.status_code != 200:
                raise UserError(f"{url} answered {response.status_code} {response.reason}")
            announced = int(response.headers.get("Content-Length") or 0)
            check_size(svc.config, announced)
            with svc.db.transaction() as conn:
                check_room(svc, conn, announced)
            size, digest = _save(svc.config, upload_id, response.iter_content(BLOCK))
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
        with svc.db.transaction() as conn:
            uploads_store.create(conn, project=project, user=None, name=name, size=size,
                                 sha256=digest, upload_id=upload_id)
            row = uploads_store.received(conn, upload_id, size)
    except requests.RequestException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"cannot download {url}: {exc}") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    log.info("downloaded %s into upload %s: %d bytes", url, upload_id, size)
    return row


def _save(cfg, upload_id: str, blocks) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    fd = _open_data(cfg, upload_id, os.O_WRONLY)
    with os.fdopen(fd, "wb") as handle:
        for block in blocks:
            size += len(block)
            check_size(cfg, size)
            digest.update(block)
            handle.write(block)
    if size == 0:
        raise UserError("the download is empty")
    return size, digest.hexdigest()


def prune_abandoned(svc, now: datetime | None = None) -> list[str]:
    """Remove uploads idle for [backup] upload_expiry_hours: those never finished or
    never imported, those whose import build has ended (the file is no longer needed),
    and folders the store does not know. Returns the ids removed."""
    now = now or datetime.now(timezone.utc)
    before = now - timedelta(hours=svc.config.backup.upload_expiry_hours)
    removed = []
    with svc.db.transaction() as conn:
        idle = uploads_store.idle_since(conn, before)
        for row in idle:
            if row["state"] == "imported" and row["build_id"] is not None:
                build = conn.execute("SELECT state FROM builds WHERE id = %s",
                                     (row["build_id"],)).fetchone()
                if build and build["state"] not in builds_store.FINISHED_STATES:
                    continue  # its import still needs the file
            uploads_store.delete(conn, row["id"])
            removed.append(row["id"])
        known = uploads_store.known_ids(conn)
    top = uploads_dir(svc.config)
    for upload_id in removed:
        shutil.rmtree(top / upload_id, ignore_errors=True)
    if top.is_dir():
        for entry in os.scandir(top):
            if (entry.name not in known and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < before.timestamp()):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    if removed:
        log.info("removed %d abandoned upload(s)", len(removed))
    return removed
