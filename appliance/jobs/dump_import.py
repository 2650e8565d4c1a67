"""Imports of uploaded dumps: a database manager or Odoo.sh zip, a .sql, .sql.gz or custom
dump, given to the pipelines as a Loader (jobs/loaders.py).

check()  reads the whole file once and changes nothing: its kind by its bytes, a zip's
         entries (paths, links, bomb limits; a .sql.gz or custom dump unpacking to
         more SQL than a zip may is a bomb too), its manifest's major version against the
         project's, the dump's integrity (gzip CRC, zip CRC, pg_dump's completion line,
         every block of a custom dump) and that it is Odoo's (jobs/dump_formats.py).
         A plain dump has no manifest: its major version is read from base's
         latest_version in the dump's own ir_module_module data, on the same pass; a
         dump without that row is accepted and left to the pipeline's plan.
load()   makes the filestore folder, then the database owned by the project's role, and
         streams the dump into it over a connection *as that role* (never the
         appliance's, whose rights a hostile dump could borrow with RESET ROLE): plain SQL
         through jobs/sql_load.py read straight from the zip member or the gzip stream,
         a custom dump through pg_restore of the server's version. The zip's filestore
         is then extracted, file by file (O_EXCL, no link followed, sizes counted
         against the limits as they are written). On any failure the database is
         dropped and the folder removed.

Free space: the database needs about the dump's size, and where PostgreSQL keeps its
data cannot be seen from here; the filestore's filesystem is checked against the zip's
filestore size before anything is made.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import psycopg

from appliance.errors import SystemFailure, UserError
from appliance.jobs import dump_formats as formats
from appliance.jobs import sql_load
from appliance.jobs.loaders import Loaded
from appliance.runtime import filestore
from appliance.runtime import postgres as pg
from appliance.store.db import conninfo

log = logging.getLogger(__name__)

# Room kept free beside the extracted filestore.
FREE_MARGIN_BYTES = 64 << 20
# Files are extracted in reads of this size.
CHUNK_BYTES = 1 << 20


class UploadLoader:
    """An uploaded file (zip, .sql, .sql.gz or custom dump) as a Loader."""

    def __init__(self, path: Path, name: str, limits: formats.Limits = formats.Limits()):
        self.path = Path(path)
        self.name = name
        self.limits = limits
        self.description = f"upload {name} ({_size(self.path.stat().st_size)})"
        self.kind: str | None = None
        self.contents: formats.ZipContents | None = None
        self.scan: formats.SqlScan | None = None

    # -- check ---------------------------------------------------------------------
    def check(self, odoo_version: str | None) -> None:
        """Every check that can be made without loading; UserError says what is wrong."""
        self.kind = formats.sniff(self.path)
        what = f"{self.name}"
        if self.kind == "zip":
            self.contents = formats.read_zip(self.path, self.limits)
            if self.contents.manifest is not None:
                formats.check_manifest(self.contents.manifest, odoo_version)
            what = f"the dump.sql of {self.name}"
        # A compressed dump may unpack to what a zip may (a plain one is its own size).
        most = (self.limits.most_unpacked(self.path.stat().st_size)
                if self.kind in ("sql.gz", "custom") else None)
        if self.kind == "custom":
            self.scan = formats.scan_custom(self.path, _newest_pg_restore(), what, most)
        else:
            with self._sql_stream() as stream:
                self.scan = formats.scan_sql(stream, what, most)
        self.scan.verdict(odoo_version, what)
        log.info("import %s: a %s dump, %s bytes of SQL, base %s, %s filestore files",
                 self.name, self.kind, self.scan.bytes, self.scan.base_version or "unknown",
                 len(self.contents.filestore) if self.contents else 0)

    @contextlib.contextmanager
    def _sql_stream(self):
        if self.kind == "zip":
            stream = formats.open_member(self.path, self.contents.dump_member)
        elif self.kind == "sql.gz":
            stream = gzip.open(self.path, "rb")
        else:
            stream = open(self.path, "rb")
        with stream:
            yield stream

    # -- load ----------------------------------------------------------------------
    def load(self, svc, database: str, owner: str, filestore_dir: Path) -> Loaded:
        if self.kind is None:
            self.check(None)  # the format's checks; the version was the caller's to give
        filestore_dir = Path(filestore_dir)
        needed = (self.contents.filestore_bytes if self.contents else 0) + FREE_MARGIN_BYTES
        filestore.check_free_space(filestore_dir.parent, needed)
        filestore_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(filestore_dir, 0o700)
        except FileExistsError:
            raise SystemFailure(f"{filestore_dir} exists: an import never fills a folder "
                                "that is there") from None
        try:
            svc.postgres.create_database(database, owner)
        except BaseException:
            filestore.remove_tree(filestore_dir)
            raise
        try:
            self._load_database(svc, database, owner)
            files = self._extract(filestore_dir)
        except BaseException as exc:
            log.warning("import %s into %s failed: %s", self.name, database, exc)
            try:
                svc.postgres.drop_database(database)
            finally:
                filestore.remove_tree(filestore_dir)
            raise
        manifest = dict(self.contents.manifest or {}) if self.contents else {}
        summary = (f"imported {self.name} ({self.kind}, {_size(self.scan.bytes)} of SQL, "
                   f"{files} filestore files)")
        log.info("import into %s: %s", database, summary)
        return Loaded(database=database, filestore_files=files, dump_bytes=self.scan.bytes,
                      manifest=manifest, summary=summary)

    def _load_database(self, svc, database: str, owner: str) -> None:
        params = _owner_params(svc, owner, database)
        if self.kind == "custom":
            _pg_restore(self.path, params, self.name)
            return
        password = params.pop("password")
        try:
            with psycopg.connect(psycopg.conninfo.make_conninfo(**params),
                                 password=password) as conn:
                with self._sql_stream() as stream:
                    sql_load.load_sql(conn, stream)
        except psycopg.OperationalError as exc:
            if _conn_failed(exc):
                raise SystemFailure(f"cannot connect to {database} as {owner}: {exc}") \
                    from None
            raise UserError(f"{self.name} does not load: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise UserError(f"{self.name} does not load: {_first_line(exc)}") from None

    def _extract(self, target: Path) -> int:
        """The zip's filestore into target (made, empty), file by file; the number of
        files."""
        if not self.contents or not self.contents.filestore:
            return 0
        written, count = 0, 0
        with zipfile.ZipFile(self.path) as archive:
            for member, relative, size in self.contents.filestore:
                written += _extract_file(archive, member, target, relative,
                                         self.limits.max_bytes - written)
                count += 1
        return count


def _extract_file(archive, member: str, target: Path, relative: str, allowed: int) -> int:
    parts = relative.split("/")
    folder = target
    for part in parts[:-1]:
        folder = folder / part
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o755)
        if folder.is_symlink() or not folder.is_dir():
            raise UserError(f"the zip's filestore path {relative!r} cannot be extracted")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(folder / parts[-1], flags, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out, archive.open(member) as source:
        while chunk := source.read(CHUNK_BYTES):
            written += len(chunk)
            if written > allowed:
                raise UserError("the zip unpacks to more than its limit: refused as a "
                                "zip bomb")
            out.write(chunk)
    return written


def _pg_restore(path: Path, params: dict, name: str) -> None:
    with psycopg.connect(psycopg.conninfo.make_conninfo(**params)) as conn:
        server = conn.info.server_version // 10000
    env = {**os.environ, "PGPASSWORD": str(params.pop("password"))}
    command = [pg.client_tool("pg_restore", server), "--no-owner", "--no-acl",
               "--exit-on-error", "--single-transaction",
               f"--dbname={psycopg.conninfo.make_conninfo(**params)}", str(path)]
    with tempfile.TemporaryFile() as errors:
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=errors, env=env).returncode
        errors.seek(0)
        lines = errors.read().decode(errors="replace").splitlines()
    if code != 0:
        own = [line for line in lines if line.startswith("pg_restore:")] or lines
        raise UserError(f"{name} does not load: {own[-1] if own else f'exit {code}'}")


def _owner_params(svc, owner: str, database: str) -> dict:
    """Connection parameters of the project role `owner` on `database` (host and port as
    the appliance's own connection has them, the role's password from its project)."""
    with svc.db.transaction() as conn:
        row = conn.execute("SELECT db_password FROM projects WHERE db_role = %s",
                           (owner,)).fetchone()
    if row is None:
        raise SystemFailure(f"no project has the role {owner}: cannot load as it")
    admin = svc.config.database.admin_dsn or conninfo(svc.config.database)
    params = psycopg.conninfo.conninfo_to_dict(admin)
    params.update(user=owner, password=row["db_password"], dbname=database,
                  application_name="appliance-import")
    return params


def _conn_failed(exc: psycopg.OperationalError) -> bool:
    """A failure to connect (not an error of the dump's SQL)."""
    return getattr(exc, "sqlstate", None) is None


def _newest_pg_restore() -> str:
    """Any pg_restore reads older archives: the check uses the one in PATH."""
    found = shutil.which("pg_restore")
    if not found:
        raise SystemFailure("pg_restore not found: install postgresql-client")
    return found


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
