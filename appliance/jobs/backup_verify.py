"""Verification: a backup is only a backup once it has been restored.

verify            the latest done backup of a project's production is restored into a
                  scratch database and a scratch folder, then compared:
                  - the dump's sha256, read back from the repository, against the one
                    recorded when it was made (the row and the manifest);
                  - rows of res_users, ir_attachment and ir_module_module against the
                    manifest's counts (taken in the dump's own snapshot);
                  - the number of filestore files against the manifest's;
                  - every filestore file's sha1 against its name (Odoo names them so) and
                    against ir_attachment.checksum (Odoo's checksum is the sha1 of the
                    content), and every attachment's file is there;
                  then both are dropped, whatever happened. One row per run says ok or
                  failed, with the details and the problems, each naming its file/table.
run_nightly       the scheduler's nightly job: verify of every production
check_repository  the weekly `restic check --read-data-subset` of the repository
recover           at start: scratch databases and folders of processes gone are removed

Verification only reads the repository (repository_lock shared) and never takes a
project's lock: production and its backups carry on meanwhile. Scratch databases are
named <db_prefix>_verify_<appliance id>_<pid>_<backup id> (no project's database can be
named so: a project's name starts with a letter), owned by the project's role and only
ever touched logged in as it: a backup holds what the project's code wrote, functions
included, and restoring or reading it as the appliance's role would run them with the
appliance's rights.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


from appliance.errors import ApplianceError, BackupError, UserError
from appliance.jobs import backup as backup_jobs
from appliance.jobs import backup_content as content
from appliance.jobs.locks import repository_lock
from appliance.runtime import filestore
from appliance.runtime import postgres as pg
from appliance.store import backup_checks as store
from appliance.store import backups as backups_store

log = logging.getLogger(__name__)

# The dump is read from restic and written to pg_restore in pieces of this size.
CHUNK_BYTES = 1 << 20
# Problems listed in a result's error text (all are counted).
LISTED_PROBLEMS = 20
# Room the scratch copy needs besides the backup's own size.
FREE_MARGIN_BYTES = 256 * 1024 * 1024
SHA1_NAME = re.compile(r"^[0-9a-f]{40}$")


def scratch_prefix(svc) -> str:
    return f"{svc.config.database.db_prefix}_verify_{svc.instance}_"


def verify_dir(cfg) -> Path:
    return backup_jobs.backups_dir(cfg) / "verify"


# -- one verification --------------------------------------------------------------------

def verify(svc, project: dict, backup_id: int | None = None) -> dict:
    """Restore and check the latest done backup of the project's production (or the
    backup named), then drop what was restored. Returns the result, as `latest` gives it.
    UserError when there is nothing to verify (nothing is recorded then)."""
    with svc.db.transaction() as conn:
        backup = _backup_to_verify(conn, project, backup_id)
        row = store.start_verification(conn, project["id"], backup["id"], os.getpid())
    log.info("verification #%s of backup #%s (%s) started", row["id"], backup["id"],
             project["name"])
    details: dict = {"backup_id": backup["id"]}
    try:
        problems = _restore_and_check(svc, project, backup, details)
    except ApplianceError as exc:
        problems = [f"the restore failed: {exc}"]
    except Exception as exc:  # recorded as a failed verification, and logged whole
        log.exception("verification of backup #%s crashed", backup["id"])
        problems = [f"internal error: {exc.__class__.__name__}: {exc}"]
    details["problems"] = len(problems)
    error = "\n".join(problems[:LISTED_PROBLEMS])
    if len(problems) > LISTED_PROBLEMS:
        error += f"\n... and {len(problems) - LISTED_PROBLEMS} more"
    with svc.db.transaction() as conn:
        store.finish_verification(conn, row["id"], not problems, details, error)
        result = latest(conn, project["id"])
    if problems:
        log.warning("verification of backup #%s of %s FAILED: %s", backup["id"],
                    project["name"], "; ".join(problems[:3]))
    else:
        log.info("verification of backup #%s of %s: ok in %.1f s", backup["id"],
                 project["name"], result["seconds"])
    return result


def _backup_to_verify(conn, project: dict, backup_id: int | None) -> dict:
    if backup_id is not None:
        backup = backups_store.get(conn, backup_id)
        if backup["project_id"] != project["id"]:
            raise UserError(f"backup #{backup_id} is not one of {project['name']}'s")
        if backup["state"] != "done" or backup["forgotten_at"] is not None:
            raise UserError(f"backup #{backup_id} is {backup['state']}"
                            f"{' and forgotten' if backup['forgotten_at'] else ''}: "
                            "nothing to verify")
        return backup
    branch = conn.execute("SELECT * FROM branches WHERE project_id = %s AND stage = "
                          "'production'", (project["id"],)).fetchone()
    backup = branch and backups_store.latest_done(conn, branch["id"])
    if not backup:
        raise UserError(f"{project['name']} has no backup of its production to verify")
    return backup


def _restore_and_check(svc, project: dict, backup: dict, details: dict) -> list[str]:
    name = f"{scratch_prefix(svc)}{os.getpid()}_{backup['id']}"
    folder = verify_dir(svc.config) / f"{os.getpid()}-{backup['id']}"
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    filestore.check_free_space(folder.parent, (backup["files_bytes"] or 0)
                               + 2 * (backup["dump_bytes"] or 0) + FREE_MARGIN_BYTES)
    try:
        with repository_lock(svc, False, f"verification of backup #{backup['id']}"):
            svc.postgres.create_database(name, project["db_role"])
            sha256, size = _restore_dump(svc, backup, name, project["db_role"])
            backup_jobs.restore_files(svc, backup, folder, include=("/filestore",))
        details["dump"] = {"bytes": size, "sha256": sha256}
        problems = _check_dump(backup, sha256)
        problems += _check_counts(svc, backup, name, details)
        problems += _check_filestore(svc, backup, name, folder / "filestore", details)
        return problems
    finally:
        svc.postgres.drop_database(name)
        shutil.rmtree(folder, ignore_errors=True)


def _restore_dump(svc, backup: dict, database: str, owner: str) -> tuple[str, int]:
    """Stream the backup's dump from restic into pg_restore, logged in as the project's
    role `owner`; (sha256, bytes) of what was read."""
    dsn, env = svc.postgres.owner_client(database, owner, "appliance-verify")
    tool = pg.client_tool("pg_restore", content.server_version(svc) // 10000)
    command = [tool, "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={dsn}"]
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=errors, env=env)
        try:
            with backup_jobs.open_dump(svc, backup) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped: its message says why
        except BaseException:
            proc.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            code = proc.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip().splitlines()
    if code != 0:
        raise BackupError(f"pg_restore of backup #{backup['id']} failed: "
                          f"{message[-1] if message else f'exit {code}'}")
    return digest.hexdigest(), size


# -- the comparisons ---------------------------------------------------------------------

def _check_dump(backup: dict, sha256: str) -> list[str]:
    problems = []
    if sha256 != backup["sha256"]:
        problems.append(f"the dump read back has sha256 {sha256}; the backup recorded "
                        f"{backup['sha256']}")
    recorded = (backup["manifest"].get("appliance") or {}).get("dump", {}).get("sha256")
    if recorded and recorded != backup["sha256"]:
        problems.append(f"the manifest's dump sha256 {recorded} is not the backup's "
                        f"{backup['sha256']}")
    return problems


def _check_counts(svc, backup: dict, database: str, details: dict) -> list[str]:
    expected = (backup["manifest"].get("appliance") or {}).get("counts")
    with _connect(svc, database) as conn:
        restored = content.count_rows(conn)
    details["counts"] = {table: {"expected": (expected or {}).get(table), "restored": found}
                         for table, found in restored.items()}
    if expected is None:
        details["counts_note"] = "a backup made before row counts were kept: not compared"
        return []
    return [f"{table}: {found} rows restored, {expected.get(table)} in the backup's "
            "manifest" for table, found in restored.items()
            if table in expected and found != expected[table]]


def _check_filestore(svc, backup: dict, database: str, folder: Path,
                     details: dict) -> list[str]:
    problems: list[str] = []
    files = _hash_files(folder, problems)
    expected = (backup["manifest"].get("appliance") or {}).get("files", {}).get("filestore", 0)
    details["filestore_files"] = {"expected": expected, "restored": len(files)}
    if len(files) != expected:
        problems.append(f"filestore: {len(files)} files restored, {expected} in the "
                        "backup's manifest")
    with _connect(svc, database) as conn:
        attachments = _stored_attachments(conn)
    for store_fname, checksum in attachments:
        found = files.get(store_fname)
        if found is None:
            problems.append(f"filestore/{store_fname}: the file of an attachment is missing")
        elif checksum and found != checksum:
            problems.append(f"filestore/{store_fname}: its content's sha1 is {found}, "
                            f"ir_attachment.checksum says {checksum}")
    details["attachments_checked"] = len(attachments)
    return problems


def _hash_files(folder: Path, problems: list[str]) -> dict[str, str]:
    """{path relative to the filestore: sha1 of its content} of every regular file; a
    file named like a sha1 whose content is another is a problem, named."""
    hashes = {}
    for root, _dirs, names in os.walk(folder):  # links are not followed
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink():
                continue
            relative = str(path.relative_to(folder))
            digest = _sha1(path)
            hashes[relative] = digest
            if SHA1_NAME.match(name) and digest != name:
                problems.append(f"filestore/{relative}: its content's sha1 is {digest}, not "
                                "its name: the file was damaged before or in the backup")
    return hashes


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_attachments(conn) -> list[tuple[str, str | None]]:
    if conn.execute("SELECT to_regclass('public.ir_attachment')").fetchone()[0] is None:
        return []
    columns = {row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'ir_attachment'")}
    if not {"store_fname", "checksum"} <= columns:
        return []
    return conn.execute("SELECT DISTINCT store_fname, checksum FROM ir_attachment "
                        "WHERE store_fname IS NOT NULL AND store_fname <> ''").fetchall()


@contextlib.contextmanager
def _connect(svc, database: str):
    """The scratch database, logged in as its owner, the project's role."""
    with svc.postgres.owner_connection(database, "appliance-verify") as conn:
        yield conn


# -- what the pages read -----------------------------------------------------------------

def latest(conn, project_id: int) -> dict | None:
    """The project's newest finished verification, or None: id, project_id, backup_id,
    backup_kind, backup_started_at, state ("ok" or "failed"), ok (bool), started_at,
    finished_at (datetimes), seconds, error (the problems, one a line, each naming its
    file or table), details (dict: dump {bytes, sha256}, counts {table: {expected,
    restored}}, filestore_files {expected, restored}, attachments_checked, problems)."""
    row = store.latest_verification(conn, project_id)
    if row is None:
        return None
    return {"id": row["id"], "project_id": row["project_id"], "backup_id": row["backup_id"],
            "backup_kind": row["backup_kind"], "backup_started_at": row["backup_started_at"],
            "state": row["state"], "ok": row["state"] == "ok",
            "started_at": row["started_at"], "finished_at": row["finished_at"],
            "seconds": row["seconds"], "error": row["error"], "details": row["details"]}


def to_json(result: dict) -> dict:
    """A result with its times as ISO strings (the CLI's --json)."""
    return {key: value.isoformat() if hasattr(value, "isoformat") else value
            for key, value in result.items()}


# -- the schedule and start-up -----------------------------------------------------------

def run_nightly(svc) -> list[dict]:
    """Verify the latest backup of every production; one failing does not stop the
    others."""
    with svc.db.transaction() as conn:
        projects = backups_store.production_projects(conn)
    results = []
    for project in projects:
        if svc.extra.get("backup_stopping"):
            break
        try:
            results.append(verify(svc, project))
        except UserError as exc:
            log.info("verification of %s skipped: %s", project["name"], exc)
        except ApplianceError as exc:
            log.warning("verification of %s: %s", project["name"], exc)
    return results


def check_repository(svc, read_data_subset: str | None = None) -> dict:
    """`restic check` of the repository, reading that share of its data ([backup]
    check_read_data_subset by default); the row recorded (ok, output, seconds)."""
    subset = read_data_subset or svc.config.backup.check_read_data_subset
    with svc.db.transaction() as conn:
        row = store.start_check(conn, subset)
    try:
        output, ok = backup_jobs.check(svc, subset), True
    except BackupError as exc:
        output, ok = str(exc), False
    with svc.db.transaction() as conn:
        row = store.finish_check(conn, row["id"], ok, output)
    (log.info if ok else log.warning)("check of the backup repository (%s of the data): %s",
                                      subset, "no errors" if ok else output)
    return row


def recover(svc) -> list[str]:
    """Scratch databases and folders left by verifications whose process is gone are
    removed, their rows failed. Returns the databases dropped."""
    prefix = scratch_prefix(svc)
    dropped = []
    for name in svc.postgres.databases(prefix):
        pid = name[len(prefix):].split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            svc.postgres.drop_database(name)
            dropped.append(name)
    for folder in verify_dir(svc.config).glob("*-*"):
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    with svc.db.transaction() as conn:
        for row in store.running_verifications(conn):
            pid = row["details"].get("pid")
            if not isinstance(pid, int) or not _alive(pid):
                store.finish_verification(conn, row["id"], False, row["details"],
                                          "interrupted: the appliance stopped during it")
    if dropped:
        log.warning("dropped scratch databases of interrupted verifications: %s", dropped)
    return dropped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
