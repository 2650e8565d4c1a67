"""Downloads of a backup, made while they are sent: nothing is copied to disk first.

zip_stream   the database manager's zip, as `odoo-bin db dump` and Odoo's database
             manager make it and `odoo-bin db load` reads it:
               dump.sql        first: the backup's custom dump turned into plain SQL on
                               the fly (`pg_restore -f - --no-owner --no-acl`, of the
                               server's version, reading `restic dump` through a pipe)
               manifest.json   Odoo's keys of the backup's manifest
               filestore/...   read from `restic dump <files snapshot> /filestore`, a tar
                               stream, file by file (links and special files left out)
             written by zipfile onto a stream that cannot seek, so each entry carries a
             data descriptor after its bytes and the central directory comes last.
dump_stream  the native dump (pg_dump custom format) as restic gives it back.

Both are iterators of bytes for the HTTP layer. A failure midway raises from the
iterator before the zip's central directory is written: the HTTP layer cuts the
connection and the client holds a file no unzip takes for whole.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tarfile
import tempfile
import zipfile
from typing import Iterator

from appliance.errors import BackupError
from appliance.jobs import backup as backups
from appliance.jobs import backup_content as content
from appliance.runtime import postgres as pg

log = logging.getLogger(__name__)

# The stream hands the HTTP layer pieces of about this size.
CHUNK_BYTES = 1 << 20
# Odoo's own keys of a dump manifest (ours, under "appliance", describe the custom dump
# and would mislead beside a plain dump.sql).
ODOO_KEYS = ("odoo_dump", "db_name", "version", "version_info", "major_version",
             "pg_version", "modules")
# SQL compresses about 5x at the fastest level; attachments (PDF, images) hardly at all,
# so they are stored as they are.
DUMP_COMPRESSLEVEL = 1


class _Sink:
    """Where zipfile writes: a list of pieces, taken by the iterator as they fill. No
    tell() or seek(): zipfile then writes data descriptors, as for a pipe."""

    def __init__(self):
        self.pieces: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.pieces.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces, self.size = [], 0
        return data


def zip_stream(svc, backup: dict) -> Iterator[bytes]:
    """The backup as the database manager's zip, in pieces as it is made."""
    backups._readable(backup)
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                              compresslevel=DUMP_COMPRESSLEVEL)
    yield from _dump_sql(svc, backup, archive, sink)
    yield sink.take()  # dump.sql whole: its data descriptor goes out with it
    manifest = {key: backup["manifest"][key] for key in ODOO_KEYS
                if key in (backup["manifest"] or {})}
    archive.writestr(_info("manifest.json", zipfile.ZIP_DEFLATED),
                     json.dumps(manifest, indent=4))
    yield from _filestore(svc, backup, archive, sink)
    archive.close()
    yield sink.take()
    log.info("backup #%s downloaded as a zip", backup["id"])


def dump_stream(svc, backup: dict) -> Iterator[bytes]:
    """The backup's database dump in pg_dump's custom format, as it was made."""
    with backups.open_dump(svc, backup) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def _info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _dump_sql(svc, backup: dict, archive: zipfile.ZipFile, sink: _Sink) -> Iterator[bytes]:
    server = content.server_version(svc) // 10000
    command = [pg.client_tool("pg_restore", server), "--no-owner", "--no-acl", "-f", "-"]
    info = _info("dump.sql", zipfile.ZIP_DEFLATED)
    with backups.open_dump(svc, backup) as dump, tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=dump, stdout=subprocess.PIPE, stderr=errors)
        try:
            with archive.open(info, "w", force_zip64=True) as member:
                while chunk := proc.stdout.read(CHUNK_BYTES):
                    member.write(chunk)
                    if sink.size >= CHUNK_BYTES:
                        yield sink.take()
                code = proc.wait()
                if code != 0:
                    errors.seek(0)
                    lines = errors.read().decode(errors="replace").strip().splitlines()
                    raise BackupError(f"pg_restore of backup #{backup['id']} failed: "
                                      f"{lines[-1] if lines else f'exit {code}'}")
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _filestore(svc, backup: dict, archive: zipfile.ZipFile, sink: _Sink) -> Iterator[bytes]:
    files = ((backup["manifest"] or {}).get("appliance") or {}).get("files") or {}
    if not files.get("filestore"):
        return  # the backup holds no filestore: restic would fail on a missing path
    repo = backups.repository(svc)
    with repo.dump(backup["files_snapshot"], "/filestore") as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = member.name.lstrip("/")
                    if not member.isreg() or not name.startswith("filestore/"):
                        continue
                    yield from _add_file(archive, sink, name, member.size,
                                         tar.extractfile(member))
        except tarfile.TarError as exc:
            raise BackupError(f"restic's filestore of backup #{backup['id']} cannot be "
                              f"read: {exc}") from None


def _add_file(archive: zipfile.ZipFile, sink: _Sink, name: str, size: int,
              source) -> Iterator[bytes]:
    info = _info(name, zipfile.ZIP_STORED)
    info.file_size = size  # known from the tar: zip64 fields only where they are needed
    with archive.open(info, "w") as member:
        while chunk := source.read(CHUNK_BYTES):
            member.write(chunk)
            if sink.size >= CHUNK_BYTES:
                yield sink.take()
    if sink.size >= CHUNK_BYTES:
        yield sink.take()
