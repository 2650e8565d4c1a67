"""How much disk a project uses: its repository, its databases (pg_database_size), its
Odoo data folders (filestores and sessions: production's and each kept build's) and its
backups (the sizes recorded when they were made; restic's own stats would read the whole
repository).

The data folders are written by build containers, so they are walked without following
a link and without opening anything (lstat only), each inode counted once (a staging
copy of a filestore is hard links), and at most MAX_ENTRIES entries per project: a
container that made millions of files makes the figure a lower bound, not a slow page.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from appliance import layout
from appliance.jobs import containers

log = logging.getLogger(__name__)

MAX_ENTRIES = 500_000


@dataclass
class Tally:
    """Bytes on disk of the trees walked so far, each inode once."""
    bytes: int = 0
    entries: int = 0
    partial: bool = False  # a folder could not be read, or MAX_ENTRIES was reached
    seen: set = field(default_factory=set)

    def walk(self, top: Path) -> int:
        """Add the tree under `top` (nothing if it is missing); returns its bytes."""
        before = self.bytes
        stack = [str(top)]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if self.entries >= MAX_ENTRIES:
                            self.partial = True
                            return self.bytes - before
                        self.entries += 1
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:  # removed meanwhile
                            continue
                        self._count(info)
                        if stat.S_ISDIR(info.st_mode):
                            stack.append(entry.path)
            except FileNotFoundError:
                continue
            except OSError:
                self.partial = True
        return self.bytes - before

    def _count(self, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1:
            if key in self.seen:
                return
            self.seen.add(key)
        self.bytes += info.st_blocks * 512


@dataclass(frozen=True)
class DiskUse:
    repository: int
    databases: list[tuple[str, int]]   # (name, bytes), largest first
    data: int                          # Odoo data folders: filestores, sessions
    data_partial: bool
    backups_kept: int
    backup_latest: int | None          # the latest backup's dump and files, uncompressed
    backup_added: int                  # what the kept backups added to the repository

    @property
    def database_total(self) -> int:
        return sum(size for _, size in self.databases)

    @property
    def total(self) -> int:
        return self.repository + self.database_total + self.data + self.backup_added


def database_sizes(conn, names: list[str]) -> dict[str, int]:
    """pg_database_size of those of `names` that exist (the appliance's role is a member
    of each project role, so it may connect to their databases)."""
    if not names:
        return {}
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the caller's usable
            rows = conn.execute("""SELECT datname, pg_database_size(oid) AS size
                                   FROM pg_database WHERE datname = ANY(%s)
                                   AND datconnlimit <> -2""", (sorted(set(names)),)).fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        # [database] admin_dsn made the project roles, and the state database's role is
        # not a member of them (nor of pg_read_all_stats): the sizes stay unknown.
        log.warning("database sizes unknown: %s", exc)
        return {}
    return {row["datname"]: row["size"] for row in rows}


def project_databases(conn, cfg, project: dict) -> list[str]:
    """Production's database and those of the project's builds not yet dropped."""
    rows = conn.execute("""SELECT DISTINCT database FROM builds WHERE project_id = %s
                           AND database IS NOT NULL AND state <> 'dropped'""",
                        (project["id"],)).fetchall()
    return sorted({layout.production_database(cfg, project["name"])}
                  | {row["database"] for row in rows})


def data_folders(conn, cfg, project: dict) -> list[Path]:
    rows = conn.execute("""SELECT id, data_dir FROM builds WHERE project_id = %s
                           AND state <> 'dropped'""", (project["id"],)).fetchall()
    folders = {layout.production_data_dir(cfg, project["name"]).parent}
    folders |= {containers.build_paths(cfg, row["id"], row["data_dir"]).data for row in rows}
    # Production's builds share the project's folder, already counted whole.
    inside = layout.production_data_dir(cfg, project["name"]).parent
    return sorted(f for f in folders if f == inside or inside not in f.parents)


def backup_sizes(conn, project: dict) -> dict:
    return conn.execute(
        """SELECT count(*) AS kept, coalesce(sum(bytes_added), 0) AS added,
                  (SELECT coalesce(dump_bytes, 0) + coalesce(files_bytes, 0) FROM backups
                   WHERE project_id = %(id)s AND state = 'done' AND forgotten_at IS NULL
                   ORDER BY id DESC LIMIT 1) AS latest
           FROM backups WHERE project_id = %(id)s AND state = 'done'
           AND forgotten_at IS NULL""", {"id": project["id"]}).fetchone()


def measure(svc, project: dict) -> DiskUse:
    cfg = svc.config
    with svc.db.transaction() as conn:
        names = project_databases(conn, cfg, project)
        sizes = database_sizes(conn, names)
        folders = data_folders(conn, cfg, project)
        backups = backup_sizes(conn, project)
    repository = Tally().walk(cfg.paths.repos / f"{project['name']}.git")
    data = Tally()
    for folder in folders:
        data.walk(folder)
    return DiskUse(repository=repository,
                   databases=sorted(sizes.items(), key=lambda item: -item[1]),
                   data=data.bytes, data_partial=data.partial,
                   backups_kept=backups["kept"], backup_latest=backups["latest"],
                   backup_added=backups["added"])


def summaries(conn, cfg, projects: list[dict]) -> dict[int, dict]:
    """The cheap part of every project's use, for the list of projects: its databases'
    sizes and its backups' recorded sizes, without walking folders."""
    found = {}
    for project in projects:
        names = project_databases(conn, cfg, project)
        backups = backup_sizes(conn, project)
        found[project["id"]] = {"databases": sum(database_sizes(conn, names).values()),
                                "backups": backups["added"], "backups_kept": backups["kept"]}
    return found
