"""Restores and imports: a backup, or an uploaded dump, loaded into production or staging.

A restore or an import is a build of the target branch, on its current head, with
trigger "restore" or "import" and a `source` ({"backup": id} or {"file": path, "name":
..., "remove_after": ...}): its progress, steps, logs and history are a build's. The
production pipeline loads the source beside the live database and swaps it in under the
same snapshot-and-rollback as a full deploy (jobs/production_restore.py); the staging
pipeline loads it in place of a copy of production and neutralizes it.

request_restore / request_import   check everything that can be checked (the branch,
                                   the backup or the file, its Odoo version) and queue
                                   the build; a refusal queues nothing
loader_for                         the Loader (jobs/loaders.py) of a queued build
BackupLoader                       a backup of ours, read back from the restic repository
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
from pathlib import Path

from appliance import policy
from appliance.errors import SystemFailure, UserError
from appliance.jobs import backup, stages
from appliance.jobs.loaders import Loaded, Loader
from appliance.jobs.steps import BuildFailed
from appliance.runtime import filestore
from appliance.store import backups as backups_store
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

TRIGGERS = ("restore", "import")
# Room needed beside a restored backup's own size: restic's cache, PostgreSQL's WAL.
LOAD_MARGIN_BYTES = 256 * 1024 * 1024


# -- asking for one ----------------------------------------------------------------------

def request_restore(svc, project: dict, backup_id: int, branch_name: str,
                    user: dict | None) -> dict:
    """Queue the restore of one of the project's backups into its production or a
    staging branch; returns the build. UserError, and nothing queued, when it cannot be."""
    _may_replace(svc, project, branch_name, user)
    with svc.db.transaction() as conn:
        row = conn.execute("SELECT id FROM backups WHERE id = %s AND project_id = %s",
                           (int(backup_id), project["id"])).fetchone()
        if row is None:  # another project's backup is not named to this one
            raise UserError(f"{project['name']} has no backup #{backup_id}")
        row = backups_store.get(conn, row["id"])
    return _request(svc, project, branch_name, user, BackupLoader(row), "restore",
                    {"backup": row["id"]}, f"restore of backup #{row['id']}")


def request_import(svc, project: dict, path: Path, name: str, branch_name: str,
                   user: dict | None, remove_after: bool = False) -> dict:
    """Queue the import of a database manager zip, an Odoo.sh backup or a dump (the file
    at `path`, called `name` by whoever gave it) into production or a staging branch;
    returns the build. The file is checked first: UserError, nothing queued, when it is
    not an Odoo database of the project's version. With remove_after, the build removes
    the file when it ends."""
    from appliance.jobs.dump_import import UploadLoader  # the formats' own module
    _may_replace(svc, project, branch_name, user)
    path = Path(path).absolute()
    return _request(svc, project, branch_name, user, UploadLoader(path, name), "import",
                    {"file": str(path), "name": name, "remove_after": bool(remove_after)},
                    f"import of {name}")


def _may_replace(svc, project: dict, branch_name: str, user: dict | None) -> None:
    """Before anything else: the user's role may replace this branch's data."""
    with svc.db.transaction() as conn:
        target = projects_store.get_branch(conn, project, branch_name)
        policy.require_actor(conn, user, project, "backup_restore", target["stage"])


def _request(svc, project: dict, branch_name: str, user: dict | None, loader: Loader,
             trigger: str, source: dict, what: str) -> dict:
    with svc.db.transaction() as conn:
        _check_target(projects_store.get_branch(conn, project, branch_name))
    loader.check(project["odoo_version"])  # before anything is queued: a clear refusal
    with svc.db.transaction() as conn:
        branch = projects_store.get_branch(conn, project, branch_name)
        build = stages.queue_head(svc, conn, project, branch, user, trigger, source)
        by = f" by {user['name']}" if user else ""
        builds_store.add_event(
            conn, project_id=project["id"], branch_id=branch["id"], build_id=build["id"],
            user_id=user["id"] if user else None, kind=trigger,
            message=f"{what} into {branch_name} queued{by}: build #{build['id']}",
            data={"build": build["id"], **public_source(source)})
    log.info("%s into %s/%s queued as build #%s", what, project["name"], branch_name,
             build["id"])
    return build


def _check_target(branch: dict) -> None:
    if branch["stage"] not in ("production", "staging"):
        raise UserError(f"{branch['name']} is a {branch['stage']} branch: a backup or a dump "
                        "is loaded into production or a staging branch")


def public_source(source: dict) -> dict:
    """What the history and the pages show of a source: never a path on the server."""
    if "backup" in source:
        return {"backup": source["backup"]}
    return {"upload": source.get("name", "")}


# -- in the build ------------------------------------------------------------------------

def loader_for(svc, build: dict) -> Loader:
    """The loader of a restore or import build's source."""
    source = build.get("source") or {}
    if "backup" in source:
        with svc.db.transaction() as conn:
            return BackupLoader(backups_store.get(conn, int(source["backup"])))
    if "file" in source:
        from appliance.jobs.dump_import import UploadLoader
        path = Path(source["file"])
        return UploadLoader(path, source.get("name") or path.name)
    raise BuildFailed(f"build #{build['id']} has no backup or file to load")


def release_source(build: dict) -> None:
    """The build ended: an uploaded file it was to remove goes."""
    source = build.get("source") or {}
    if source.get("file") and source.get("remove_after"):
        try:
            os.unlink(source["file"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("build %s: cannot remove the imported file: %s", build["id"], exc)


def same_major(found: str, expected: str) -> bool:
    """Are two Odoo versions of one major version ("18.0" and "18", "saas~17.4")?"""
    return _major(found) == _major(expected)


def _major(version: str) -> str:
    version = str(version or "").strip()
    return f"{version}.0" if re.fullmatch(r"\d+", version) else version


# -- a backup of ours --------------------------------------------------------------------

class BackupLoader:
    """A done backup: its dump streamed from restic into pg_restore, its filestore
    extracted by restic into a folder of the daemon's and moved into place."""

    def __init__(self, row: dict):
        self.backup = row
        when = row["started_at"].strftime("%Y-%m-%d %H:%M") if row.get("started_at") else ""
        self.description = f"backup #{row['id']} ({row['kind']}, {when})"

    def check(self, odoo_version: str) -> None:
        row = self.backup
        if row["state"] != "done":
            raise UserError(f"backup #{row['id']} is {row['state']}: only a done backup "
                            "can be restored")
        if row["forgotten_at"] is not None:
            raise UserError(f"backup #{row['id']} was removed from the repository by "
                            "retention: it cannot be restored")
        found = (row["manifest"] or {}).get("major_version")
        if not found:
            raise UserError(f"backup #{row['id']} does not say which Odoo it is of "
                            "(no major_version in its manifest)")
        if not same_major(found, odoo_version):
            raise UserError(f"backup #{row['id']} is of Odoo {found}; this project runs "
                            f"{odoo_version}: it cannot be restored here")

    def load(self, svc, database: str, owner: str, filestore_dir: Path) -> Loaded:
        row, filestore_dir = self.backup, Path(filestore_dir)
        if os.path.lexists(filestore_dir):
            raise SystemFailure(f"{filestore_dir} exists: a restore never fills a folder "
                                "that is there")
        filestore.check_free_space(filestore_dir.parent, (row["dump_bytes"] or 0)
                                   + (row["files_bytes"] or 0) + LOAD_MARGIN_BYTES)
        work = backup.backups_dir(svc.config) / "work" / f"load-{database}"
        filestore.remove_tree(work)  # left by a load a stop cut short
        work.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        svc.postgres.create_database(database, owner)  # a name taken fails here
        try:
            with backup.open_dump(svc, row) as stream:
                svc.postgres.restore_dump(stream, database, owner)
            files = self._filestore(svc, work, filestore_dir)
        except BaseException:
            svc.postgres.drop_database(database)
            filestore.remove_tree(filestore_dir)
            raise
        finally:
            filestore.remove_tree(work)
        summary = (f"{self.description}: dump of {(row['dump_bytes'] or 0) // 2**20} MB, "
                   f"{files} file(s)")
        return Loaded(database=database, filestore_files=files,
                      dump_bytes=row["dump_bytes"] or 0, manifest=row["manifest"] or {},
                      summary=summary)

    def _filestore(self, svc, work: Path, target: Path) -> int:
        """restic extracts the filestore into `work` (a new folder of the daemon's, no
        container sees it); it is then moved to `target`, given to the containers' user."""
        backup.restore_files(svc, self.backup, work)
        extracted = work / "filestore"
        if not extracted.is_dir():  # a database without attachments on disk
            extracted.mkdir(mode=0o700)
        move_folder(extracted, target)
        return _give_to(target, svc.config.runtime.uid)


def move_folder(source: Path, target: Path) -> None:
    """Move a folder to `target`, which must not exist: renamed where one filesystem holds
    both, copied (links as links) otherwise. Never moved into a folder, or through a
    link, someone left at `target`."""
    if os.path.realpath(target.parent) != os.path.abspath(target.parent):
        raise SystemFailure(f"{target.parent}: a symbolic link on the way; refused")
    if os.path.lexists(target):
        raise SystemFailure(f"{target} exists: refusing to replace it")
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copytree(source, target, symlinks=True)  # makes target: fails if it exists


def _give_to(folder: Path, uid: int) -> int:
    """The restored files belong to the containers' user (restic restores the owners it
    saw, and the folders were the daemon's); returns the number of regular files."""
    chown = os.geteuid() == 0
    if chown:
        os.chown(folder, uid, uid, follow_symlinks=False)
    count = 0
    for root, folders, files in os.walk(folder):  # links are never followed
        for name in folders + files:
            if chown:
                os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
        count += sum(stat.S_ISREG(os.lstat(os.path.join(root, name)).st_mode)
                     for name in files)
    return count
