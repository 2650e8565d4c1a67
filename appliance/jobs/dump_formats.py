"""The formats of an imported database: told by their bytes, checked before anything loads.

An upload is one of:

  zip      the database manager's backup (also Odoo.sh's download): `dump.sql` (plain
           pg_dump), `manifest.json` (Odoo's dump keys) and `filestore/<xx>/<sha1>`
  sql      a plain pg_dump
  sql.gz   the same, gzipped
  custom   `pg_dump -Fc` (pg_restore's custom format)

`sniff` tells them apart by their first bytes, never by the file's name. `read_zip` lists
a zip's entries and refuses what could hurt when extracted: paths leaving the filestore,
links, encrypted or duplicate entries, and zip bombs (entry count, total size and ratio
bounded by `Limits`). `SqlScan` reads a plain dump as a stream, once, and says whether it
is Odoo's (the `ir_module_module` and `res_users` tables), whether it is whole (pg_dump's
completion line at its end) and which Odoo it is (base's `latest_version`). A custom dump
is read through `pg_restore -f -` (its SQL text) by the same scan, so a damaged or cut
custom dump fails the same way. Nothing here touches a database or a socket.
"""

from __future__ import annotations

import gzip
import json
import re
import stat
import subprocess
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from appliance.errors import UserError

KINDS = ("zip", "sql", "sql.gz", "custom")
DUMP_MEMBER = "dump.sql"
MANIFEST_MEMBER = "manifest.json"
FILESTORE_PREFIX = "filestore/"
COMPLETION_LINE = b"-- PostgreSQL database dump complete"
ODOO_TABLES = ("ir_module_module", "res_users")
# psql commands pg_dump itself writes (since 17.6, 16.10, 15.14...): the only ones allowed.
PG_DUMP_GUARDS = (b"\\restrict ", b"\\unrestrict ")
# Odoo's manifest.json is a few KB (a module list); anything larger is not one.
MANIFEST_MAX_BYTES = 16 << 20
# Lines longer than this (bytea rows of COPY data) are read in pieces: memory stays bounded.
LINE_PIECE_BYTES = 1 << 20
# A zip's total uncompressed size may exceed its own size this many times; below
# RATIO_FREE_BYTES uncompressed no ratio is enforced (a small dump of text is fine).
RATIO_FREE_BYTES = 64 << 20
_CREATE_TABLE = re.compile(rb"^CREATE TABLE (?:public\.)?\"?(\w+)\"? \(")
_COPY_MODULES = re.compile(rb"^COPY (?:public\.)?ir_module_module \(([^)]*)\) FROM stdin;")
_COPY_ANY = re.compile(rb"^COPY .* FROM stdin;\s*$")


@dataclass(frozen=True)
class Limits:
    """Bounds of what an import may unpack: a zip beyond them is refused as a bomb."""

    max_bytes: int = 1 << 40          # total uncompressed size (1 TiB)
    max_ratio: float = 100.0          # total uncompressed size / size of the zip
    max_entries: int = 2_000_000      # a filestore of 2 million attachments

    def most_unpacked(self, packed_bytes: int) -> int:
        """The most SQL a compressed dump (.sql.gz, custom) of packed_bytes may unpack
        to: the zip's bounds, so that a gzip bomb cannot fill PostgreSQL's disk."""
        return min(self.max_bytes, max(RATIO_FREE_BYTES, int(self.max_ratio * packed_bytes)))


@dataclass
class ZipContents:
    """A checked zip: where its dump is and what its filestore holds."""

    dump_member: str
    dump_bytes: int
    manifest: dict | None
    filestore: list[tuple[str, str, int]] = field(default_factory=list)  # member, path, size
    filestore_bytes: int = 0


def sniff(path: Path) -> str:
    """The kind of a dump file ("zip", "sql", "sql.gz" or "custom"), from its first bytes;
    UserError for anything else."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        raise UserError("the file is empty")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "sql.gz"
    if head.startswith(b"PGDMP"):
        return "custom"
    if head.startswith(b"\x00\x00") or head[:512].lstrip().startswith(b"toc.dat"):
        raise UserError("this is not a dump this appliance reads: a tar or directory "
                        "dump of pg_dump is not supported (use -Fc or a plain dump)")
    if b"\x00" not in head and _looks_like_sql(head):
        return "sql"
    raise UserError("this is not a database dump: expected a database manager zip, a "
                    ".sql or .sql.gz file or a pg_dump custom dump (-Fc)")


def _looks_like_sql(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at 4096 is fine
        if exc.start < len(head) - 4:
            return False
        text = head[:exc.start].decode("utf-8")
    first = text.lstrip("\ufeff \t\r\n").upper()
    return first.startswith(("--", "SET ", "CREATE ", "SELECT ", "BEGIN", "\\RESTRICT"))


# -- zip ---------------------------------------------------------------------------------

def read_zip(path: Path, limits: Limits = Limits()) -> ZipContents:
    """The checked entries of a database manager zip; UserError naming what is wrong."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UserError(f"the zip is damaged or cut short ({exc})") from None
    with archive:
        infos = archive.infolist()
        _check_bomb(infos, Path(path).stat().st_size, limits)
        seen: set[str] = set()
        dump, manifest_info, contents = None, None, ZipContents("", 0, None)
        for info in infos:
            name = _checked_name(info)
            if name in seen:
                raise UserError(f"the zip holds {name!r} twice: refused")
            seen.add(name)
            if info.is_dir():
                continue
            if name == DUMP_MEMBER:
                dump = info
            elif name == DUMP_MEMBER + ".gz":
                raise UserError("the zip holds dump.sql.gz: unzip it and gunzip its dump, "
                                "then import the .sql.gz file itself")
            elif name == MANIFEST_MEMBER:
                manifest_info = info
            elif name.startswith(FILESTORE_PREFIX):
                relative = name[len(FILESTORE_PREFIX):]
                contents.filestore.append((info.filename, relative, info.file_size))
                contents.filestore_bytes += info.file_size
        if dump is None:
            raise UserError("the zip has no dump.sql: it is not a database manager backup")
        contents.dump_member, contents.dump_bytes = dump.filename, dump.file_size
        if manifest_info is not None:
            contents.manifest = _read_manifest(archive, manifest_info)
    _check_tree([relative for _, relative, _ in contents.filestore])
    return contents


def _check_bomb(infos: list[zipfile.ZipInfo], zip_bytes: int, limits: Limits) -> None:
    if len(infos) > limits.max_entries:
        raise UserError(f"the zip holds {len(infos):,} entries, more than the "
                        f"{limits.max_entries:,} allowed: refused")
    total = sum(info.file_size for info in infos)
    if total > limits.max_bytes:
        raise UserError(f"the zip unpacks to {total:,} bytes, more than the "
                        f"{limits.max_bytes:,} allowed: refused")
    if total > RATIO_FREE_BYTES and total > limits.max_ratio * max(zip_bytes, 1):
        raise UserError(f"the zip unpacks to {total / max(zip_bytes, 1):.0f} times its size "
                        f"(at most {limits.max_ratio:.0f} allowed): refused as a zip bomb")


def _checked_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type given (plain files)
    if info.flag_bits & 0x1:
        raise UserError(f"the zip entry {name!r} is encrypted: refused")
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise UserError(f"the zip entry {name!r} is a link or a special file: refused")
    path = PurePosixPath(name)
    if "\\" in name or "\x00" in name or path.is_absolute() or name.startswith("/"):
        raise UserError(f"the zip entry {name!r} is an absolute or unusual path: refused")
    if any(part in ("..", ".") for part in path.parts):
        raise UserError(f"the zip entry {name!r} leaves its folder ('..'): refused")
    if name.startswith(FILESTORE_PREFIX) and not info.is_dir() and len(path.parts) < 2:
        raise UserError(f"the zip entry {name!r} is not a file of the filestore")
    return name.rstrip("/") if info.is_dir() else name


def _check_tree(paths: list[str]) -> None:
    """A file may not also be a folder of another file (one would fail to extract)."""
    files = set(paths)
    for relative in paths:
        for parent in PurePosixPath(relative).parents:
            if str(parent) in files:
                raise UserError(f"the zip's filestore holds {parent} both as a file and as "
                                "a folder: refused")


def _read_manifest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    if info.file_size > MANIFEST_MAX_BYTES:
        raise UserError("the zip's manifest.json is too large to be Odoo's")
    try:
        data = archive.read(info)
        manifest = json.loads(data)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UserError(f"the zip's manifest.json is damaged ({exc})") from None
    except ValueError as exc:
        raise UserError(f"the zip's manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise UserError("the zip's manifest.json is not an object")
    return manifest


def open_member(path: Path, member: str) -> BinaryIO:
    """A stream of one member of a zip (its CRC checked at its end, as zipfile does); the
    caller closes it. The zip stays open while it is read."""
    archive = zipfile.ZipFile(path)
    stream = archive.open(member)
    close = stream.close

    def close_both():
        close()
        archive.close()
    stream.close = close_both
    return stream


# -- manifest and versions ---------------------------------------------------------------

def manifest_major(manifest: dict) -> str | None:
    """The major version an Odoo manifest names ("17.0", "saas~17.2"), if any."""
    if not isinstance(manifest, dict):
        return None
    major = manifest.get("major_version")
    if isinstance(major, str) and major:
        return major
    info = manifest.get("version_info")
    if isinstance(info, list) and len(info) >= 2:
        return f"{info[0]}.{info[1]}"
    version = manifest.get("version")
    if isinstance(version, str):
        found = re.match(r"((?:saas~)?\d+\.\d+)", version)
        return found.group(1) if found else None
    return None


def check_manifest(manifest: dict, odoo_version: str | None) -> None:
    """An Odoo dump manifest, of the project's major version (when one is given)."""
    if "odoo_dump" not in manifest and "db_name" not in manifest:
        raise UserError("the zip's manifest.json is not an Odoo dump manifest "
                        "(no odoo_dump, no db_name)")
    modules = manifest.get("modules", {})
    if not isinstance(modules, dict):
        raise UserError("the zip's manifest.json lists its modules wrongly (not an object)")
    major = manifest_major(manifest)
    if major is None:
        raise UserError("the zip's manifest.json does not say which Odoo made it")
    check_major(major, odoo_version)


def check_major(major: str, odoo_version: str | None) -> None:
    if odoo_version and major != odoo_version:
        raise UserError(f"this is a dump of Odoo {major}; the project runs {odoo_version}")


def module_major(latest_version: str) -> str | None:
    """The Odoo series of a module's latest_version: "18.0.1.3" -> "18.0"."""
    parts = latest_version.split(".")
    return ".".join(parts[:-2]) if len(parts) >= 4 else None


# -- plain SQL -----------------------------------------------------------------------------

class SqlScan:
    """One pass over a plain dump's lines: the tables it creates, base's version, whether
    it ends with pg_dump's completion line."""

    def __init__(self, most_bytes: int | None = None):
        self.most_bytes = most_bytes  # past it, the dump is refused as a bomb
        self.tables: set[str] = set()
        self.base_version: str | None = None
        self.complete = False
        self.bytes = 0
        self.psql_command: str | None = None  # a meta-command of psql (e.g. \!), if any
        self._columns: list[bytes] | None = None  # inside COPY ir_module_module
        self._in_copy = False
        self._line_start = True

    def feed_stream(self, stream: BinaryIO) -> "SqlScan":
        while piece := stream.readline(LINE_PIECE_BYTES):
            self.feed(piece)
        return self

    def feed(self, piece: bytes) -> None:
        """A line, or a piece of a long one (only a piece after a newline starts one)."""
        self.bytes += len(piece)
        if self.most_bytes is not None and self.bytes > self.most_bytes:
            raise UserError(f"the dump unpacks to more than {self.most_bytes:,} bytes of SQL, "
                            "far more than its own size: refused as a bomb")
        starts, self._line_start = self._line_start, piece.endswith(b"\n")
        if not starts:
            return
        line = piece.rstrip(b"\r\n")
        if self._in_copy:
            if line == b"\\.":
                self._in_copy, self._columns = False, None
            elif self._columns is not None and self.base_version is None:
                self._module_row(line)
            return
        if not line.strip() or line == b"--":
            return
        if line.startswith(b"\\unrestrict ") and self.complete:
            return
        if line.startswith(b"\\") and not line.startswith(PG_DUMP_GUARDS):
            self.psql_command = self.psql_command or line.split()[0].decode(errors="replace")
        self.complete = line == COMPLETION_LINE
        if line.startswith(b"CREATE TABLE"):
            found = _CREATE_TABLE.match(line)
            if found:
                self.tables.add(found.group(1).decode())
        elif _COPY_ANY.match(line):
            self._in_copy = True
            found = _COPY_MODULES.match(line)
            if found:
                self._columns = [c.strip().strip(b'"') for c in found.group(1).split(b",")]

    def _module_row(self, line: bytes) -> None:
        values = line.split(b"\t")
        if len(values) != len(self._columns):
            return
        row = dict(zip(self._columns, values))
        if row.get(b"name") == b"base" and row.get(b"latest_version") not in (None, b"\\N"):
            self.base_version = row[b"latest_version"].decode(errors="replace")

    @property
    def major(self) -> str | None:
        return module_major(self.base_version) if self.base_version else None

    def verdict(self, odoo_version: str | None, what: str = "the dump") -> None:
        """UserError when the dump is cut short, not Odoo's or of another major version
        (as far as base's row says: a dump without it is left to the plan)."""
        if not self.complete:
            raise UserError(f"{what} is cut short: it does not end with pg_dump's line "
                            f"'{COMPLETION_LINE.decode()}'")
        if self.psql_command:
            raise UserError(f"{what} holds the psql command {self.psql_command}: only "
                            "pg_dump's own output is loaded")
        missing = [name for name in ODOO_TABLES if name not in self.tables]
        if missing:
            raise UserError(f"{what} is not an Odoo database: it has no "
                            f"{' and no '.join(missing)} table")
        if self.major:
            check_major(self.major, odoo_version)


def scan_sql(stream: BinaryIO, what: str = "the dump",
             most_bytes: int | None = None) -> SqlScan:
    """Scan a plain dump (a gzip stream is checked to its CRC on the way); refused past
    most_bytes of SQL."""
    scan = SqlScan(most_bytes)
    try:
        scan.feed_stream(stream)
    except EOFError:
        raise UserError(f"{what} is cut short (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as exc:
        raise UserError(f"{what} is damaged ({exc})") from None
    return scan


def scan_custom(path: Path, pg_restore: str, what: str = "the custom dump",
                most_bytes: int | None = None) -> SqlScan:
    """Scan a custom dump through `pg_restore -f -` (every block read: a cut or damaged
    file fails there, as it would fail to load); refused past most_bytes of SQL."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([pg_restore, "--no-owner", "--no-acl", "-f", "-", str(path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errors)
        try:
            scan = SqlScan(most_bytes).feed_stream(proc.stdout)
        finally:
            proc.stdout.close()
            code = proc.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    if code != 0:
        last = message.splitlines()[-1] if message else f"exit {code}"
        raise UserError(f"{what} is damaged or cut short: {last}")
    return scan
