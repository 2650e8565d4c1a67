"""What a backup holds, and how it is read without trusting the build's container.

A backup of a branch (production, or staging on demand) is two restic snapshots:

  dump   one file, /database.dump: `pg_dump -Fc -Z0` of the branch's database streamed
         into restic, never written to disk; its sha256 and size counted on the way.
  files  the top of the snapshot is laid out like the database manager's zip, plus ours:
           /manifest.json   Odoo's dump keys (odoo_dump, db_name, version, version_info,
                            major_version, pg_version, modules) and ours under "appliance"
           /filestore/...   Odoo's filestore of the database (<xx>/<sha1>)
           /sessions/...    Odoo's sessions
           /logs/...        the build's logs (install, update, neutralize, pip)
           /server-log/...  its server's odoo.log

Odoo's data dir is written by the build's container, which runs hostile code: it can swap
any folder there for a link to a host path at any moment. So restic never walks it.
`stage` first makes a tree of hard links to its files in a folder of the daemon's (no
container mounts it), walking each folder through a descriptor opened relative to its
parent with O_NOFOLLOW: a link is copied as a link, never followed, and a folder swapped
mid-walk is skipped. restic then backs up that tree, which nobody else can change. (A
file's bytes can still change while read: they are the container's own data.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.sql

from appliance.errors import BackupError, SystemFailure, UserError
from appliance.jobs import containers
from appliance.runtime import postgres as pg
from appliance.store import backups as backups_store
from appliance.store.db import conninfo

log = logging.getLogger(__name__)

DUMP_NAME = "database.dump"
MANIFEST_NAME = "manifest.json"
# pg_dump's output is read and handed to restic in pieces of this size.
CHUNK_BYTES = 1 << 20
# A table held exclusively for longer than this fails the dump instead of hanging it.
LOCK_WAIT_TIMEOUT = "60s"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A file this large whose disk blocks hold less than 1/SPARSE_RATIO of its size is a hole
# a container made (`truncate -s 1T`), not an attachment: restic would read every zero and
# restic 0.14 writes them all out again at a restore. Left out, with a warning. (A
# compressing filesystem stores at most about 32x less: btrfs's extents.)
SPARSE_MIN_BYTES = 64 << 20
SPARSE_RATIO = 64
# Rows counted in the dump's own snapshot: a verification compares a restore against them.
COUNTED_TABLES = ("res_users", "ir_attachment", "ir_module_module")
# Reads Odoo's release module in a process of its own: (version, version_info, major).
RELEASE_SCRIPT = ("import json, runpy, sys; g = runpy.run_path(sys.argv[1]); "
                  "print(json.dumps([g['version'], list(g['version_info']), "
                  "g.get('major_version') or g['serie']]))")


@dataclass
class Source:
    """The branch whose data is backed up, and where that data is."""

    project: dict
    branch: dict
    build: dict
    database: str
    data_dir: Path        # Odoo's data dir: written by the container
    build_dir: Path       # the build's own folder (logs/, server-log/)


@dataclass
class Staged:
    """Counts of what `stage` linked, per top-level folder."""

    files: dict = field(default_factory=dict)
    bytes: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def find_source(svc, conn, project: dict, branch: dict) -> Source:
    """The database and folders of the branch's serving build; a clear error when the
    branch cannot be backed up."""
    if branch["stage"] not in ("production", "staging"):
        raise UserError(f"{branch['name']} is a {branch['stage']} branch: only production "
                        "and staging branches are backed up")
    build = backups_store.serving_build(conn, branch["id"])
    if build is None:
        raise UserError(f"{branch['name']} has no database yet (no build running or stopped)")
    paths = containers.build_paths(svc.config, build["id"], build["data_dir"])
    return Source(project=project, branch=branch, build=build, database=build["database"],
                  data_dir=paths.data, build_dir=paths.root)


class DumpStream:
    """`pg_dump -Fc -Z0` of a database as an iterable of chunks, hashed and counted as
    they pass. A failing pg_dump raises BackupError at the end of the stream, before the
    consumer sees its end; closing the stream early stops pg_dump.

    pg_dump reads a snapshot exported by a transaction of ours, which counts the rows of
    COUNTED_TABLES in that same snapshot (`counts`: table -> rows, None when it has no
    such table): exactly what the dump holds, however busy production is."""

    def __init__(self, svc, database: str):
        self.svc = svc
        self.database = database
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.counts: dict[str, int | None] = {}

    def __iter__(self):
        server = server_version(self.svc)
        with _exported_snapshot(self.svc, self.database) as (snapshot, conn):
            self.counts = count_rows(conn)
            yield from self._dump(server, snapshot)

    def _dump(self, server: int, snapshot: str):
        command, env = dump_command(self.svc, self.database, server // 10000, snapshot)
        running = self.svc.extra.setdefault("backup_dumps", set())  # for backup.stop
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env,
                                    stdin=subprocess.DEVNULL)
            running.add(proc)
            try:
                while chunk := proc.stdout.read(CHUNK_BYTES):
                    self.sha256.update(chunk)
                    self.bytes += len(chunk)
                    yield chunk
                code = proc.wait()
            finally:
                running.discard(proc)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
        if code != 0:
            raise BackupError(f"pg_dump of {self.database} failed: "
                              f"{message.splitlines()[-1] if message else f'exit {code}'}")


@contextlib.contextmanager
def _exported_snapshot(svc, database: str):
    """(snapshot id, connection) of a read-only repeatable-read transaction on the
    database, open for the block. The connection is the database owner's, never the
    appliance's: what it reads may be a view running the project's functions. pg_dump
    (the appliance's role, running none of them) takes the same snapshot."""
    try:  # autocommit: the transaction is ours, BEGIN
        conn = svc.postgres.owner_connection(database, "appliance-backup")
    except SystemFailure as exc:
        raise BackupError(str(exc)) from None
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT_TIMEOUT}'")
        yield conn.execute("SELECT pg_export_snapshot()").fetchone()[0], conn
    finally:
        conn.close()


def count_rows(conn) -> dict[str, int | None]:
    """Rows of COUNTED_TABLES (None for a table the database does not have)."""
    counts = {}
    for table in COUNTED_TABLES:
        if conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0] is None:
            counts[table] = None
            continue
        counts[table] = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
        ).fetchone()[0]
    return counts


def dump_command(svc, database: str, server_major: int,
                 snapshot: str | None = None) -> tuple[list[str], dict]:
    """pg_dump's command line and environment: the password in PGPASSWORD, never argv."""
    params = psycopg.conninfo.conninfo_to_dict(admin_info(svc))
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params.pop("password"))
    params.update(dbname=database, application_name="appliance-backup")
    return ([pg.client_tool("pg_dump", server_major), *pg.DUMP_ARGS,
             f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
             *([f"--snapshot={snapshot}"] if snapshot else []),
             f"--dbname={psycopg.conninfo.make_conninfo(**params)}"], env)


def admin_info(svc) -> str:
    return svc.config.database.admin_dsn or conninfo(svc.config.database)


def server_version(svc) -> int:
    """PostgreSQL's server_version_num, e.g. 150010."""
    try:
        with psycopg.connect(admin_info(svc)) as conn:
            return conn.info.server_version
    except psycopg.Error as exc:
        raise BackupError(f"cannot reach PostgreSQL: {exc}") from None


def odoo_release(svc, version: str) -> dict:
    """version, version_info and major_version of the configured Odoo source, as Odoo's
    own dumps give them; from the project's version alone when the source cannot say.
    The source is the one the configuration names (never a branch's code): its release
    module is run in a Python of its own."""
    spec = svc.config.odoo_version(version)
    local = Path(spec.source)
    source = local if (local / "odoo-bin").exists() else svc.config.paths.odoo / "src" / version
    try:
        out = subprocess.run([sys.executable, "-I", "-c", RELEASE_SCRIPT,
                              str(source / "odoo" / "release.py")],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        found, info, major = json.loads(out)
        return {"version": found, "version_info": info, "major_version": major}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        log.warning("Odoo %s: cannot read its release module (%s); using the project's "
                    "version", version, exc)
        parts = [int(p) if p.isdigit() else p for p in version.split(".")]
        return {"version": version, "version_info": parts + [0, "final", 0, ""][len(parts) - 2:],
                "major_version": version}


def manifest(svc, source: Source, backup: dict, dump: DumpStream, staged: Staged) -> dict:
    """Odoo's dump manifest for the database, plus what the appliance knows of it."""
    server = server_version(svc)
    release = odoo_release(svc, source.project["odoo_version"])
    return {
        "odoo_dump": "1",
        "db_name": source.database,
        **release,
        # As Odoo computes it (15.0 for any 15.x).
        "pg_version": "%d.%d" % divmod(server / 100, 100),
        "modules": svc.postgres.module_versions(source.database),
        "appliance": {
            "backup_id": backup["id"], "kind": backup["kind"],
            "project": source.project["name"], "branch": source.branch["name"],
            "stage": source.branch["stage"], "revision": source.build["commit"],
            "build_id": source.build["id"], "started_at": backup["started_at"].isoformat(),
            "dump": {"path": f"/{DUMP_NAME}", "format": "pg_dump custom, uncompressed",
                     "bytes": dump.bytes, "sha256": dump.sha256.hexdigest()},
            "files": staged.files, "bytes": staged.bytes,
            # What a verification compares a restore with: rows in the dump (files of
            # the filestore: files["filestore"]).
            "counts": dump.counts,
        },
    }


def stage(source: Source, work: Path) -> Staged:
    """The tree restic backs up, in `work` (made here, 0700): hard links to the files of
    the filestore, the sessions and the logs, walked without following any link."""
    os.mkdir(work, 0o700)
    staged = Staged()
    parts = [("filestore", source.data_dir, f"filestore/{source.database}"),
             ("sessions", source.data_dir, "sessions"),
             ("logs", source.build_dir, "logs"),
             ("server-log", source.build_dir, "server-log")]
    for name, root, relative in parts:
        counts = [0, 0]
        try:
            fd = _open_folder(root, relative)
        except FileNotFoundError:
            continue
        except OSError as exc:  # a link or a file where a folder should be
            staged.warnings.append(f"{relative}: not a folder ({exc.strerror}); left out")
            log.warning("backup of %s: %s/%s is not a folder (%s); left out", source.database,
                        root, relative, exc.strerror)
            continue
        try:
            os.mkdir(work / name, 0o700)
            _link_folder(fd, str(work / name), counts, staged.warnings, f"{name}/")
        finally:
            os.close(fd)
        staged.files[name], staged.bytes[name] = counts
    return staged


def _open_folder(root: Path, relative: str) -> int:
    """A descriptor of root/relative, each component opened relative to the previous one
    with O_NOFOLLOW (ELOOP or ENOTDIR when one is a link or not a folder)."""
    current = os.open(root, _DIRECTORY)
    try:
        for part in relative.split("/"):
            following = os.open(part, _DIRECTORY, dir_fd=current)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def _link_folder(src_fd: int, target: str, counts: list[int], warnings: list[str],
                 relative: str) -> None:
    with os.scandir(src_fd) as entries:
        items = list(entries)
    for entry in items:
        path = f"{target}/{entry.name}"
        if entry.is_symlink():
            os.symlink(os.readlink(entry.name, dir_fd=src_fd), path)
        elif entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, _DIRECTORY, dir_fd=src_fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise
                continue  # swapped or removed since it was listed
            try:
                os.mkdir(path, 0o700)
                _link_folder(child, path, counts, warnings, f"{relative}{entry.name}/")
            finally:
                os.close(child)
        elif entry.is_file(follow_symlinks=False):
            info = _link_file(src_fd, entry.name, path)
            if info is None:
                continue
            if _sparse(info):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                warnings.append(f"{relative}{entry.name}: a sparse file of {info.st_size:,} "
                                f"bytes holding {info.st_blocks * 512:,} on disk; left out")
                log.warning("backup: %s", warnings[-1])
                continue
            counts[0] += 1
            counts[1] += info.st_size


def _sparse(info: os.stat_result) -> bool:
    return (stat.S_ISREG(info.st_mode) and info.st_size >= SPARSE_MIN_BYTES
            and info.st_blocks * 512 * SPARSE_RATIO < info.st_size)


def _link_file(src_fd: int, name: str, path: str) -> os.stat_result | None:
    """Hard-link one file (linkat without following: a link swapped in is linked as the
    link itself); copied where the folders are on two filesystems, unless it is sparse
    (see _sparse: then nothing is made). Its status; None when gone."""
    try:
        os.link(name, path, src_dir_fd=src_fd, follow_symlinks=False)
        return os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=src_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if _sparse(info):
            return info
        with open(path, "xb") as copy:
            shutil.copyfileobj(source, copy, CHUNK_BYTES)
    return os.stat(path, follow_symlinks=False)
