"""Backups of production and staging: made, kept, forgotten, and read back.

create      one backup of a branch (jobs/backup_content.py says what it holds): the
            database dump streamed into restic, then the files; a row in `backups`
            follows it from running to done or failed
            (then, outside the project's lock, its copies off the box start:
            jobs/backup_copies.py; their failure never fails the backup)
prune       a project's retention: daily backups 7 days / 4 weeks / 3 months (restic's
            own policy, [backup] keep_*), manual, update and safety backups 14 days;
            snapshots of failed backups go too, on the copy targets as well; then
            `restic prune` frees the space
run_daily   the scheduler's hourly job: a daily backup of each production whose hour
            ([backup] daily_first_hour + a per-project offset) has come and that has none
            since, then retention
recover     at start: backups cut short by a stop are failed, stale restic locks removed

Locks (jobs/locks.py): never two backups of one project at once, and none during a
deploy: both take `project_lock`. Backups hold `repository_lock` shared, forget, prune
and check exclusive (restic itself would fail, not wait, on its own lock).

The repository is <data_dir>/backups/restic; its password, made once, is in
<data_dir>/backups/restic-password (0600). Without that password nothing restores.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from appliance import policy
from appliance.errors import ApplianceError, BackupError, UserError
from appliance.jobs import backup_content as content
from appliance.jobs import backup_copies
from appliance.jobs.locks import PROJECT_LOCK, advisory, project_lock, repository_lock
from appliance.runtime import filestore
from appliance.runtime.restic import KeepPolicy, Repository, Restic
from appliance.store import backups as backups_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

KINDS = backups_store.KINDS
# Room the repository needs besides the database's size: restic's indexes and packs.
FREE_MARGIN_BYTES = 256 * 1024 * 1024
# A daily backup that failed this many times since its hour is not tried again that day.
DAILY_ATTEMPTS = 3

_repository_guard = threading.Lock()


# -- where things are -----------------------------------------------------------------

def backups_dir(cfg) -> Path:
    return cfg.paths.data_dir / "backups"


def password_path(cfg) -> Path:
    return backups_dir(cfg) / "restic-password"


def repository(svc) -> Restic:
    """The appliance's restic repository, made (with its password) the first time."""
    with _repository_guard:
        repo = svc.extra.get("restic")
        if repo is None:
            repo = _open_repository(svc.config, create=True)
            svc.extra["restic"] = repo
        return repo


def _open_repository(cfg, create: bool) -> Restic | None:
    folder = backups_dir(cfg)
    location, password = folder / "restic", password_path(cfg)
    if not create and not (location / "config").exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if not password.exists():
        if (location / "config").exists():
            raise BackupError(f"the backup repository {location} exists but its password file "
                              f"{password} is missing: put back the copy you kept")
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        log.warning("made the backup repository's password %s: keep a copy of it elsewhere, "
                    "without it no backup can be restored", password)
    repo = Restic(Repository(str(location), password), cache_dir=folder / "cache",
                  lock_wait_seconds=cfg.backup.lock_wait_minutes * 60)
    repo.init()
    return repo


def _work_dir(cfg, backup_id: int) -> Path:
    return backups_dir(cfg) / "work" / str(int(backup_id))


# -- making a backup ---------------------------------------------------------------------

def create(svc, project: dict, branch: dict | str | None = None, kind: str = "manual",
           user: dict | None = None, *, at: datetime | None = None) -> dict:
    """Back up a production or staging branch (production when none is named) and return
    the backup's row, done. Waits for a deploy or another backup of the project; raises
    UserError for a branch that cannot be backed up (nothing is recorded), BackupError
    when the backup failed (its row says so). `at` dates it (for tests and benches)."""
    if kind not in KINDS:
        raise UserError(f"unknown kind of backup {kind!r} (known: {', '.join(KINDS)})")
    with svc.db.transaction() as conn:
        branch = _branch(conn, project, branch)
        policy.require_actor(conn, user, project, "backup_download", branch["stage"])
        content.find_source(svc, conn, project, branch)  # refuse early, before any wait
    repo = repository(svc)
    with project_lock(svc, project["id"], f"{kind} backup of {project['name']}"):
        with svc.db.transaction() as conn:
            source = content.find_source(svc, conn, project, branch)  # a deploy may be done
            row = backups_store.start(conn, project=project, branch=branch,
                                      build=source.build, kind=kind, user=user, started_at=at)
        log.info("backup #%s (%s) of %s/%s started", row["id"], kind, project["name"],
                 branch["name"])
        try:
            row = _make(svc, repo, source, row, at, time.monotonic())
        except BaseException as exc:
            _fail(svc, row, exc)
            raise
    log.info("backup #%s done: %s bytes added in %.1f s", row["id"], row["bytes_added"],
             row["seconds"] or 0)
    backup_copies.after_backup(svc, row)  # outside the project's lock; never raises
    return row


def _branch(conn, project: dict, branch: dict | str | None) -> dict:
    if isinstance(branch, dict):
        return branch
    if branch is None:
        row = conn.execute("SELECT * FROM branches WHERE project_id = %s "
                           "AND stage = 'production'", (project["id"],)).fetchone()
        if row is None:
            raise UserError(f"project {project['name']} has no production branch yet")
        return row
    return projects_store.get_branch(conn, project, branch)


def _make(svc, repo: Restic, source: content.Source, row: dict, at: datetime | None,
          started: float) -> dict:
    if Path(repo.repo.location).is_dir():
        filestore.check_free_space(Path(repo.repo.location),
                                   svc.postgres.database_size(source.database)
                                   + FREE_MARGIN_BYTES)
    tags = [f"project={source.project['name']}", f"kind={row['kind']}", f"backup={row['id']}"]
    work = _work_dir(svc.config, row["id"])
    work.parent.mkdir(parents=True, exist_ok=True)
    with repository_lock(svc, False, f"backup #{row['id']} of {source.project['name']}"):
        dump = content.DumpStream(svc, source.database)
        dumped = repo.backup_stdin(dump, content.DUMP_NAME, tags + ["part=dump"], time=at)
        with svc.db.transaction() as conn:
            backups_store.update(conn, row["id"], dump_snapshot=dumped.snapshot_id,
                                 dump_bytes=dump.bytes, sha256=dump.sha256.hexdigest())
        try:
            staged = content.stage(source, work)
            manifest = content.manifest(svc, source, row, dump, staged)
            (work / content.MANIFEST_NAME).write_text(json.dumps(manifest, indent=1,
                                                                 sort_keys=True))
            with svc.db.transaction() as conn:
                previous = backups_store.latest_done(conn, source.branch["id"])
            files = repo.backup_paths(sorted(os.listdir(work)), work, tags + ["part=files"],
                                      time=at, parent=previous and previous["files_snapshot"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info("backup #%s: dump %s bytes (%s new), files %s bytes (%s new)", row["id"],
             dump.bytes, dumped.data_added, files.total_bytes, files.data_added)
    with svc.db.transaction() as conn:
        return backups_store.finish(
            conn, row["id"], "done", seconds=time.monotonic() - started,
            files_snapshot=files.snapshot_id,
            files_bytes=files.total_bytes, bytes_added=dumped.data_added + files.data_added,
            manifest=manifest, warnings="\n".join(staged.warnings + list(files.warnings)))


def _fail(svc, row: dict, exc: BaseException) -> None:
    """The backup's row says why; its snapshots, if any, go at the next prune."""
    reason = str(exc) if isinstance(exc, ApplianceError) else \
        f"internal error: {exc.__class__.__name__}: {exc}"
    if svc.extra.get("backup_stopping"):
        reason = f"interrupted: the appliance stopped during the backup ({reason})"
    log.warning("backup #%s failed: %s", row["id"], reason)
    with svc.db.transaction() as conn:
        backups_store.finish(conn, row["id"], "failed", error=reason)


# -- retention ---------------------------------------------------------------------------

def prune(svc, project: dict, now: datetime | None = None, free_space: bool = True) -> dict:
    """Apply the project's retention; returns {"kept": [backup ids], "forgotten": [backup
    ids], "reasons": {backup id: restic's reasons to keep a daily backup}}."""
    cfg = svc.config.backup
    now = now or datetime.now(timezone.utc)
    repo = repository(svc)
    name = project["name"]
    with repository_lock(svc, True, f"retention of {name}"):
        with svc.db.transaction() as conn:
            done = {row["id"] for row in backups_store.kept(conn, project["id"])
                    if row["state"] == "done"}
        snapshots = repo.snapshots([f"project={name}"])
        # Snapshots of failed or unknown backups first, so they never take a day's place.
        repo.forget(s.id for s in snapshots if _backup_id(s) not in done)
        snapshots = [s for s in snapshots if _backup_id(s) in done]
        plan = repo.forget_policy([f"project={name}", "kind=daily", "part=dump"],
                                  KeepPolicy(cfg.keep_daily, cfg.keep_weekly, cfg.keep_monthly),
                                  dry_run=True)
        expired = {_backup_id(s) for s in plan.remove}
        oldest = now - timedelta(days=cfg.keep_other_days)
        expired |= {_backup_id(s) for s in snapshots
                    if s.tag("kind") != "daily" and s.time < oldest}
        repo.forget(s.id for s in snapshots if _backup_id(s) in expired)
        present = {_backup_id(s) for s in snapshots if s.tag("part") == "dump"}
        forgotten = expired | (done - present)
        with svc.db.transaction() as conn:
            backups_store.mark_forgotten(conn, sorted(forgotten))
            backups_store.forget_failed_before(conn, project["id"], oldest)
        if free_space and expired:
            repo.prune()
    kept = sorted(present - forgotten)
    log.info("retention of %s: %s backup(s) kept, %s forgotten", name, len(kept),
             len(forgotten))
    backup_copies.apply_retention(svc, name, set(kept) | (done - forgotten))
    return {"kept": kept, "forgotten": sorted(forgotten),
            "reasons": {_backup_id(s): plan.reasons.get(s.id, []) for s in plan.keep}}


def _backup_id(snapshot) -> int | None:
    value = snapshot.tag("backup")
    return int(value) if value and value.isdigit() else None


def free_space(svc) -> None:
    """`restic prune`: the space of forgotten snapshots back."""
    with repository_lock(svc, True, "prune of the backup repository"):
        repository(svc).prune()


# -- the schedule ------------------------------------------------------------------------

def daily_hour(cfg, project_name: str) -> int:
    """The project's hour (UTC) for its daily backup, fixed by its name."""
    spread = max(1, cfg.backup.daily_hours)
    return (cfg.backup.daily_first_hour + zlib.crc32(project_name.encode()) % spread) % 24


def run_daily(svc, now: datetime | None = None) -> list[dict]:
    """Run hourly: a daily backup of each production whose hour has come and that has
    none since (a missed one is made at the next run), then its retention."""
    if not svc.config.backup.daily:
        return []
    now = now or datetime.now(timezone.utc)
    with svc.db.transaction() as conn:
        projects = backups_store.production_projects(conn)
    made = []
    for project in projects:
        if svc.extra.get("backup_stopping") or project.get("archived_at") is not None \
                or not _due(svc, project, now):
            continue  # an archived project's data does not change: its backups stay as they are
        try:
            made.append(create(svc, project, None, "daily"))
            prune(svc, project, free_space=False)
        except ApplianceError as exc:
            log.warning("daily backup of %s: %s (tried again at the next run)",
                        project["name"], exc)
        except Exception:  # one project's failure must not stop the others' backups
            log.exception("daily backup of %s crashed", project["name"])
    if made:
        free_space(svc)
    return made


def _due(svc, project: dict, now: datetime) -> bool:
    hour = daily_hour(svc.config, project["name"])
    slot = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if slot > now:
        slot -= timedelta(days=1)
    with svc.db.transaction() as conn:
        since = backups_store.since(conn, project["id"], "daily", slot)
    if any(row["state"] in ("done", "running") for row in since):
        return False
    return sum(row["state"] == "failed" for row in since) < DAILY_ATTEMPTS


# -- start-up and stop -------------------------------------------------------------------

def stop(svc) -> None:
    """The daemon is stopping: running backups are interrupted (restic saves nothing and
    removes its lock; their rows fail, saying so) and no new one starts."""
    svc.extra["backup_stopping"] = True
    repo = svc.extra.get("restic")
    if repo is not None:
        repo.interrupt()
    backup_copies.interrupt(svc)
    for dump in list(svc.extra.get("backup_dumps", ())):
        dump.kill()  # one waiting for a table lock would not notice restic is gone


def recover(svc) -> list[int]:
    """After a stop or a kill: backups left running by a process that is gone are failed
    (a backup still running in another process holds its project's lock and is left
    alone), their work folders removed, and restic's stale locks removed. Returns the ids
    failed."""
    with svc.db.transaction() as conn:
        rows = backups_store.running(conn)
    failed = []
    for row in rows:
        try:
            with advisory(svc, PROJECT_LOCK, row["project_id"], False,
                           "recovery of backups", "the project", wait_ms=1):
                with svc.db.transaction() as conn:
                    backups_store.finish(conn, row["id"], "failed",
                                         error="interrupted: the appliance stopped during "
                                               "the backup")
        except BackupError:
            continue  # its project's lock is held: that backup is alive
        failed.append(row["id"])
        shutil.rmtree(_work_dir(svc.config, row["id"]), ignore_errors=True)
    try:
        repo = _open_repository(svc.config, create=False)
        if repo is not None:
            repo.unlock()
    except BackupError as exc:  # the daemon still starts; backups will say it again
        log.warning("backup repository: %s", exc)
    if failed:
        log.warning("backups %s were cut short by a stop: marked failed", failed)
    return failed


# -- reading backups back ----------------------------------------------------------------

def open_dump(svc, backup: dict):
    """The backup's database dump (pg_dump custom format) as a stream, in a with block."""
    _readable(backup)
    return repository(svc).dump(backup["dump_snapshot"], f"/{content.DUMP_NAME}")


def restore_files(svc, backup: dict, target: Path, include=("/filestore",)) -> None:
    """Extract the backup's files (by default its filestore, as target/filestore) into
    `target`, a new folder: never into one that exists."""
    _readable(backup)
    repository(svc).restore(backup["files_snapshot"], Path(target), include)


def check(svc, read_data_subset: str | None = None) -> str:
    """`restic check` of the repository (reading that share of the data, e.g. "5%")."""
    with repository_lock(svc, True, "check of the backup repository"):
        return repository(svc).check(read_data_subset)


def _readable(backup: dict) -> None:
    if backup["state"] != "done" or backup["forgotten_at"] is not None:
        raise UserError(f"backup #{backup['id']} is {backup['state']}"
                        f"{' and forgotten' if backup['forgotten_at'] else ''}: "
                        "nothing to read")
