"""Copies of the backups off the box: each copy target is another restic repository.

A target is a folder (a mounted disk), `sftp:user@host:/path`, `s3:host/bucket/path` or
`rest:https://host/path`; restic speaks the protocol. Its repository is made with the
appliance repository's chunker parameters, so a copy deduplicates as the original does,
and `restic copy` brings it the snapshots of done backups it lacks (restic skips those it
has). A target's row (store/backup_checks.py) says when it last succeeded and why it
failed; its secrets are only in files, mode 0600, under <data_dir>/backups/targets/<name>/:

  password     the target repository's password (restic reads it from the file)
  env          NAME=VALUE lines for restic's backend (AWS_ACCESS_KEY_ID...), given to the
               restic process of that target and to nothing else
  ssh-key      the identity an sftp target logs in with
  known_hosts  the sftp server's host key: given, or remembered at the first connection

They are written once and never read back to anyone: not shown, not logged, never on a
command line.

After each backup the copies run in the background (the daemon's `backup-copies` job is
asked to run now), outside the project's lock: a slow or broken target never holds a
deploy, never fails a backup and never touches production. The same job runs every
[backup] copy_retry_minutes, so a target that was down catches up once it is back.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
from datetime import datetime, timezone
from pathlib import Path

from appliance.errors import ApplianceError, UserError
from appliance.jobs.locks import repository_lock
from appliance.runtime.restic import Repository, Restic
from appliance.store import backup_checks as store

log = logging.getLogger(__name__)

SCHEMES = ("sftp:", "s3:", "rest:")
# The only variables an `env` file may give restic: credentials of its backends.
ENV_NAMES = re.compile(r"^(AWS_[A-Z_]+|RESTIC_REST_[A-Z_]+|B2_[A-Z_]+|AZURE_[A-Z_]+"
                       r"|GOOGLE_[A-Z_]+|OS_[A-Z_]+|ST_[A-Z_]+)$")
SECRET_MODE = 0o600
# An sftp target's ssh: never a prompt (the daemon has no terminal), and a dead link is
# noticed within about three minutes instead of hanging the copy.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ServerAliveInterval=60",
               "-o", "ServerAliveCountMax=3")


# -- where a target's files are ----------------------------------------------------------

def targets_dir(cfg) -> Path:
    from appliance.jobs import backup
    return backup.backups_dir(cfg) / "targets"


def target_dir(cfg, name: str) -> Path:
    return targets_dir(cfg) / name


def _write_secret(path: Path, data: bytes, owner: os.stat_result) -> None:
    """A new file, 0600 from its creation, never through a link, owned like the backups
    folder (a CLI run as root writes files the daemon's user must read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, SECRET_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    _own(path, owner)


def _own(path: Path, owner: os.stat_result) -> None:
    if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


# -- adding, listing, removing targets ---------------------------------------------------

def check_location(cfg, location: str) -> str:
    """The location as restic takes it, or UserError."""
    location = (location or "").strip()
    if not location or any(ord(c) < 32 for c in location):
        raise UserError("a copy target needs a location: a folder, sftp:, s3: or rest:")
    if location.startswith("rest:"):
        if re.match(r"^rest:https?://[^/@]*:[^/@]*@", location, re.IGNORECASE):
            raise UserError("a rest: location with a password in it would show the password "
                            "on restic's command line: give a rest-server without "
                            "credentials in the URL (TLS, private network), or use sftp:")
        return location
    if location.startswith(SCHEMES):
        return location
    if ":" in location.split("/")[0] and not location.startswith("/"):
        raise UserError(f"unknown kind of location {location.split(':')[0]!r}: a folder "
                        "(absolute path), sftp:, s3: or rest:")
    path = Path(location)
    if not path.is_absolute():
        raise UserError(f"{location}: a folder target must be an absolute path")
    from appliance.jobs import backup
    if path.resolve().is_relative_to(backup.backups_dir(cfg).resolve()):
        raise UserError(f"{location} is inside the appliance's own backups folder: a copy "
                        "must be on another disk or host")
    # Containers write parts of the data folder: a repository there could be swapped for
    # links that restic, run by the daemon, would follow.
    if path.resolve().is_relative_to(Path(cfg.paths.data_dir).resolve()):
        raise UserError(f"{location} is inside the appliance's data folder: a copy must be "
                        "on another disk or host")
    return str(path)


def add(svc, name: str, location: str, password: str, *, env: dict | None = None,
        ssh_identity: bytes | None = None, ssh_port: int | None = None,
        known_hosts: bytes | None = None) -> dict:
    """A new copy target, its repository made now (or an existing one opened with the
    password): a wrong location, password or credential is refused at once, nothing
    kept. Returns its row."""
    location = check_location(svc.config, location)
    if not password or "\n" in password.strip("\n"):
        raise UserError("a copy target needs its repository password (one line)")
    env = dict(env or {})
    for key in env:
        if not ENV_NAMES.match(key):
            raise UserError(f"{key} is not a credential variable of restic's backends")
    if (ssh_identity or ssh_port or known_hosts) and not location.startswith("sftp:"):
        raise UserError("ssh options are for sftp: targets only")
    local = _local(svc)  # made first: the target takes its chunker parameters
    folder = target_dir(svc.config, name)
    with svc.db.transaction() as conn:
        row = store.add_target(conn, name, location,
                               {"ssh_port": ssh_port} if ssh_port else {})
        _write_files(folder, password, env, ssh_identity, known_hosts)
        try:
            made = open_target(svc, row).init(chunker_params_from=local)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    log.info("copy target %s added (%s), its repository %s", name, location,
             "made" if made else "found")
    return row


def _write_files(folder: Path, password: str, env: dict, identity: bytes | None,
                 known_hosts: bytes | None) -> None:
    owner = folder.parent.parent.stat()  # <data_dir>/backups
    if not folder.parent.exists():
        os.mkdir(folder.parent, 0o700)
        _own(folder.parent, owner)
    if folder.exists() or folder.is_symlink():  # left by a target removed by hand
        shutil.rmtree(folder)
    os.mkdir(folder, 0o700)
    _own(folder, owner)
    _write_secret(folder / "password", password.strip("\n").encode() + b"\n", owner)
    _write_secret(folder / "env", "".join(f"{k}={v}\n" for k, v in env.items()).encode(),
                  owner)
    if identity:
        _write_secret(folder / "ssh-key", identity if identity.endswith(b"\n")
                      else identity + b"\n", owner)
    _write_secret(folder / "known_hosts", known_hosts or b"", owner)


def remove(svc, name: str) -> dict:
    """Forget a target: its row and its secrets. Its repository is left as it is."""
    with svc.db.transaction() as conn:
        row = store.remove_target(conn, name)
    shutil.rmtree(target_dir(svc.config, name), ignore_errors=True)
    svc.extra.get("restic_targets", {}).pop(name, None)
    log.info("copy target %s removed (its repository %s is left as it is)", name,
             row["location"])
    return row


def status(svc) -> list[dict]:
    """One dict per target for the Backups page and the CLI: name, location, kind
    (folder, sftp, s3, rest), state ("ok", "failing", "pending": never copied yet),
    created_at, last_attempt_at, last_ok_at, failing_since (datetimes or None),
    last_error, last_copied_backup (a backup id or None), behind (done backups newer
    than the last one copied)."""
    with svc.db.transaction() as conn:
        rows = store.targets(conn)
        newer = {row["id"]: conn.execute(
            "SELECT count(*) AS n FROM backups WHERE state = 'done' AND forgotten_at IS NULL "
            "AND id > coalesce(%s, 0)", (row["last_copied_backup"],)).fetchone()["n"]
            for row in rows}
    return [{"name": row["name"], "location": row["location"],
             "kind": _kind(row["location"]),
             "state": "failing" if row["failing_since"] else
                      "ok" if row["last_ok_at"] else "pending",
             "created_at": row["created_at"], "last_attempt_at": row["last_attempt_at"],
             "last_ok_at": row["last_ok_at"], "failing_since": row["failing_since"],
             "last_error": row["last_error"], "last_copied_backup": row["last_copied_backup"],
             "behind": newer[row["id"]]} for row in rows]


def _kind(location: str) -> str:
    return location.split(":", 1)[0] if location.startswith(SCHEMES) else "folder"


# -- restic for a target -----------------------------------------------------------------

class TargetRestic(Restic):
    """restic on a target: with the target's extended options (`-o sftp.command=...`)
    on every command."""

    def __init__(self, repo: Repository, options: list[str], **kwargs):
        super().__init__(repo, **kwargs)
        self.options = list(options)

    def _command(self, args: list[str], quiet: bool = True) -> list[str]:
        command = super()._command(args, quiet)
        at = command.index("--json")
        return command[:at] + [part for option in self.options
                               for part in ("-o", option)] + command[at:]


def open_target(svc, row: dict) -> TargetRestic:
    """The target's repository, through restic (one object per target and process, so
    that a stopping daemon interrupts it)."""
    folder = target_dir(svc.config, row["name"])
    env = _read_env(folder / "env")
    repo = TargetRestic(Repository(row["location"], folder / "password", env),
                        _options(row, folder), cache_dir=_local(svc).cache_dir,
                        lock_wait_seconds=svc.config.backup.lock_wait_minutes * 60)
    known = svc.extra.setdefault("restic_targets", {})
    if svc.extra.get("backup_stopping"):
        repo.interrupt()
    known[row["name"]] = repo
    return repo


def _read_env(path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as handle:
        lines = handle.read().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _options(row: dict, folder: Path) -> list[str]:
    if not row["location"].startswith("sftp:"):
        return []
    user_host = sftp_host(row["location"])
    command = ["ssh", *SSH_OPTIONS, "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
               "-o", "StrictHostKeyChecking=accept-new"]
    port = (row["options"] or {}).get("ssh_port")
    if port:
        command += ["-p", str(int(port))]
    if (folder / "ssh-key").exists():
        command += ["-i", str(folder / "ssh-key"), "-o", "IdentitiesOnly=yes"]
    return ["sftp.command=" + shlex.join(command + [user_host, "-s", "sftp"])]


def sftp_host(location: str) -> str:
    """`user@host` (or `host`) of an sftp location, in either of restic's forms:
    sftp:user@host:/path and sftp://user@host[:port]//path."""
    rest = location.removeprefix("sftp:")
    if rest.startswith("//"):
        host = rest[2:].split("/", 1)[0]
        return host.rsplit(":", 1)[0] if ":" in host.rsplit("@", 1)[-1] else host
    host, sep, _path = rest.partition(":")
    if not sep or not host:
        raise UserError(f"{location}: an sftp location is sftp:user@host:/path")
    return host


def _local(svc) -> Restic:
    from appliance.jobs import backup
    return backup.repository(svc)


# -- copying -----------------------------------------------------------------------------

def after_backup(svc, backup_row: dict) -> None:
    """A backup is done: its copies start in the background when the daemon runs the
    copy job, else (the CLI, a script) here and now, except for the backups a deploy or a
    restore makes under its project's lock (the daemon's job copies them later). Never
    raises: a copy never fails the backup."""
    try:
        soon = svc.extra.get("copy_soon")
        if soon is not None:
            soon()
        elif backup_row["kind"] in ("update", "safety"):
            log.info("backup #%s: copies left to the daemon's copy job", backup_row["id"])
        else:
            copy_pending(svc)
    except Exception:  # the backup is done whatever happens to its copies
        log.exception("copies after backup #%s", backup_row["id"])


def copy_pending(svc, names: list[str] | None = None) -> list[dict]:
    """Copy to each target (or those named) what it lacks: done backups newer than its
    last copy, or everything when it failed last time. Returns the targets' status."""
    with svc.db.transaction() as conn:
        rows = store.targets(conn)
        newest = store.newest_done_backup(conn)
    for row in rows:
        if names is not None and row["name"] not in names:
            continue
        if svc.extra.get("backup_stopping"):
            break
        behind = newest is not None and (row["last_copied_backup"] or 0) < newest
        if names is not None or behind or row["failing_since"] or row["last_ok_at"] is None:
            copy_to(svc, row)
    return status(svc)


def copy_to(svc, row: dict) -> bool:
    """`restic copy` of the snapshots of every done backup into one target; the row says
    how it went. True when it succeeded."""
    started = datetime.now(timezone.utc)
    try:
        copied = _copy(svc, row)
    except ApplianceError as exc:
        error = str(exc)
        if "unable to open config file" in error:
            error += " (no repository there: is the disk mounted, the remote folder right?)"
        _failed(svc, row, error)
        return False
    except Exception as exc:  # noqa: BLE001 (reported on the target, never raised)
        log.exception("copy to target %s crashed", row["name"])
        _failed(svc, row, f"internal error: {exc.__class__.__name__}: {exc}")
        return False
    with svc.db.transaction() as conn:
        store.target_copied(conn, row["id"], copied)
    log.info("copy to target %s: up to date (backup #%s) in %.1f s", row["name"], copied,
             (datetime.now(timezone.utc) - started).total_seconds())
    return True


def _copy(svc, row: dict) -> int | None:
    """Copies, returns the newest backup id the target now holds."""
    local = _local(svc)
    target = open_target(svc, row)
    with svc.db.transaction() as conn:
        done = {r["id"] for r in conn.execute(
            "SELECT id FROM backups WHERE state = 'done' AND forgotten_at IS NULL")}
    with repository_lock(svc, False, f"copy to target {row['name']}"):
        # Never made again here: an unmounted disk would get a new repository on the
        # folder under its mount point. restic's "Is there a repository..." says it.
        wanted = [s for s in local.snapshots() if _backup_id(s) in done]
        if wanted:
            local.copy_to(target, [s.id for s in wanted])
    return max((_backup_id(s) for s in wanted), default=None)


def _failed(svc, row: dict, error: str) -> None:
    log.warning("copy to target %s (%s) failed: %s; tried again later", row["name"],
                row["location"], error)
    with svc.db.transaction() as conn:
        store.target_failed(conn, row["id"], error)


def _backup_id(snapshot) -> int | None:
    value = snapshot.tag("backup")
    return int(value) if value and value.isdigit() else None


# -- retention ---------------------------------------------------------------------------

def apply_retention(svc, project_name: str, kept: set[int]) -> None:
    """Forget, on every target that answers, the project's snapshots whose backup the
    appliance's repository no longer keeps (their space comes back at the weekly prune
    of the targets). A target that fails is left for next time."""
    with svc.db.transaction() as conn:
        rows = [row for row in store.targets(conn) if not row["failing_since"]]
    for row in rows:
        try:
            target = open_target(svc, row)
            gone = [s.id for s in target.snapshots([f"project={project_name}"])
                    if _backup_id(s) not in kept]
            target.forget(gone)
        except ApplianceError as exc:
            log.warning("retention on target %s: %s", row["name"], exc)


def prune_targets(svc) -> None:
    """`restic prune` on every target that answers: the space of forgotten snapshots."""
    with svc.db.transaction() as conn:
        rows = [row for row in store.targets(conn) if not row["failing_since"]]
    for row in rows:
        try:
            open_target(svc, row).prune()
        except ApplianceError as exc:
            log.warning("prune of target %s: %s", row["name"], exc)


def interrupt(svc) -> None:
    """The daemon is stopping: every restic run on a target stops as Ctrl-C does."""
    for repo in list(svc.extra.get("restic_targets", {}).values()):
        repo.interrupt()

