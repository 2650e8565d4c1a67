"""`appliance doctor`: what an installed appliance needs, checked one by one, each problem
with the command that fixes it.

Read-only: it connects, asks and looks, and never creates, migrates or starts anything, so
it is safe to run as root on a broken install (it does not make root-owned folders).
"""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import docker
import psycopg
from psycopg.rows import dict_row
import requests

from appliance import config as config_mod
from appliance.errors import ConfigError
from appliance.store import backup_checks as checks_store
from appliance.store import db as store_db

# The system user the package runs the daemon as (systemd/appliance.service).
DAEMON_USER = "appliance"
UNIT = "appliance.service"
# Below this much free space where builds live, a build's image layers, database and
# filestore may not fit: a failure. Below the second, a warning.
DISK_FAIL_BYTES = 2 * 1024**3
DISK_WARN_BYTES = 10 * 1024**3
# How long a check waits for PostgreSQL or Docker to answer (seconds).
ANSWER_SECONDS = 5
SETUP_POSTGRESQL = "dpkg-reconfigure odoo-appliance"
# A copy target failing for longer than this is a warning (a night's outage is not).
COPY_FAILING_WARN = timedelta(days=1)
# The nightly verification and the weekly check are overdue past these ages.
VERIFY_OVERDUE = timedelta(days=2)
CHECK_OVERDUE = timedelta(days=8)


@dataclass
class Check:
    name: str
    status: str          # "ok", "warn" or "fail"
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        label = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}[self.status]
        lines = [f"{label:<5} {self.name}: {self.detail}"]
        if self.fix:
            lines.append(f"      fix: {self.fix}")
        return lines


def run(config_path: str | None) -> list[Check]:
    """Every check, in the order a person would fix things."""
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        return [Check("configuration", "fail", str(exc),
                      "correct the file, or run as root or as the appliance user "
                      f"(sudo -u {DAEMON_USER} appliance doctor) if it cannot be read")]
    where = str(cfg.source)
    checks = [Check("configuration", "ok" if cfg.source and cfg.source.exists() else "warn",
                    where if cfg.source and cfg.source.exists()
                    else f"{where} is missing: the defaults apply",
                    "" if cfg.source and cfg.source.exists()
                    else "reinstall the package, or pass --config")]
    checks.append(state_database(cfg))
    client, engine = docker_engine()
    checks.append(engine)
    if client is not None:
        checks += [base_image(client, cfg), live_restore(client)]
    checks += [daemon_user(cfg), free_disk(cfg), unit()]
    checks += odoo_sources(cfg)
    checks += backup_checks(cfg)
    checks.append(proxy_check(cfg))
    checks.append(ssh_check(cfg))
    return checks


def ssh_check(cfg, sshd: str | None = None, dropin: Path | None = None) -> Check:
    """With OpenSSH's server on the host, its drop-in for the appliance's SSH user is in
    place (git over SSH and build shells); without it, SSH is simply off."""
    from appliance.ssh import sshd_config
    sshd = sshd or sshd_config.SSHD
    dropin = dropin or sshd_config.DROPIN
    if not Path(sshd).exists():
        return Check("ssh", "ok", "openssh-server is not installed: git and shells over "
                     "SSH are off (HTTPS and the browser shell work)")
    if not dropin.exists():
        return Check("ssh", "warn", f"{dropin} is missing: sshd does not know the "
                     f"appliance's keys, so `ssh {cfg.ssh.user}@...` is refused",
                     "appliance ssh-install")
    if f"Match User {cfg.ssh.user}\n" not in dropin.read_text():
        return Check("ssh", "warn", f"{dropin} is for another user than [ssh] user = "
                     f"{cfg.ssh.user}", "appliance ssh-install")
    return Check("ssh", "ok", f"sshd serves the appliance's keys to {cfg.ssh.user}")


def proxy_check(cfg) -> Check:
    """Caddy answers on its admin API and runs the appliance's routes."""
    from appliance.jobs.proxy_config import SERVER_NAME
    from appliance.runtime.caddy import Caddy, ProxyError
    if not cfg.proxy.base_domain:
        return Check("proxy", "ok", "none configured: builds answer on loopback ports only")
    try:
        running = Caddy(cfg.proxy.admin, timeout=ANSWER_SECONDS).config() or {}
    except ProxyError as exc:
        return Check("proxy", "fail", str(exc),
                     "systemctl enable --now caddy-api (and disable the caddy unit)")
    servers = running.get("apps", {}).get("http", {}).get("servers", {})
    if SERVER_NAME not in servers:
        return Check("proxy", "warn", f"Caddy at {cfg.proxy.admin} runs no routes of the "
                     "appliance yet", "start the appliance: it loads them within "
                     f"{cfg.proxy.check_seconds:g} s")
    names = sum(len(route.get("match", [{}])[0].get("host", []))
                for route in servers[SERVER_NAME].get("routes", []))
    return Check("proxy", "ok", f"Caddy serves {names} name(s) under "
                 f"{cfg.proxy.base_domain} ({cfg.proxy.tls} certificates)")


def state_database(cfg) -> Check:
    name = "state database"
    if not cfg.database.password and "password" not in cfg.database.dsn:
        return Check(name, "fail", "no password configured",
                     "set [database] password_file = \"/etc/appliance/db-password\"")
    try:
        with psycopg.connect(store_db.conninfo(cfg.database),
                             connect_timeout=ANSWER_SECONDS) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            pending = _pending_migrations(conn)
    except psycopg.Error as exc:
        return Check(name, "fail", f"cannot connect ({cfg.database.dsn}): "
                     f"{str(exc).strip().splitlines()[-1]}", _database_fix(str(exc)))
    detail = f"PostgreSQL {version}, {cfg.database.dsn}"
    if pending:
        detail += f"; {len(pending)} migration(s) to apply at the daemon's next start"
    return Check(name, "ok", detail)


def _pending_migrations(conn) -> list[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")} \
        if exists else set()
    return [version for version, _name, _sql in store_db.migrations() if version not in applied]


def _database_fix(error: str) -> str:
    if "password authentication failed" in error or "does not exist" in error:
        return (f"as root: {SETUP_POSTGRESQL} (creates the role and database on this "
                "host's PostgreSQL with the password of [database] password_file)")
    return (f"start PostgreSQL (systemctl start postgresql), then as root: "
            f"{SETUP_POSTGRESQL}")


def docker_engine():
    """(client or None, Check)."""
    name = "docker engine"
    try:
        client = docker.from_env(timeout=ANSWER_SECONDS)
        version = client.version()["Version"]
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        if "Permission denied" in str(exc):
            return None, Check(name, "fail", "this user may not use Docker's socket",
                               "run as root or as the appliance user; the daemon's user "
                               f"must be in the docker group: adduser {DAEMON_USER} docker")
        return None, Check(name, "fail", f"no answer: {exc}",
                           "start it: systemctl start docker")
    return client, Check(name, "ok", f"Docker {version}")


def base_image(client, cfg) -> Check:
    tag = cfg.runtime.base_image
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        source = f" --config {cfg.source}" if cfg.source else ""
        return Check("base image", "fail", f"{tag} is missing (builds need it)",
                     "as root (debootstrap, about a minute): python3 -m "
                     f"appliance.runtime.images ensure-base{source}")
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return Check("base image", "fail", f"cannot inspect {tag}: {exc}")
    return Check("base image", "ok", tag)


def live_restore(client) -> Check:
    name = "docker live-restore"
    try:
        enabled = client.info().get("LiveRestoreEnabled")
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return Check(name, "warn", f"cannot tell: {exc}")
    if enabled:
        return Check(name, "ok", "on: builds keep serving while dockerd restarts")
    return Check(name, "warn", "off: a restart of dockerd (its upgrades) stops every build",
                 'add "live-restore": true to /etc/docker/daemon.json, then '
                 "systemctl reload docker")


def daemon_user(cfg) -> Check:
    name = f"user {DAEMON_USER}"
    try:
        user = pwd.getpwnam(DAEMON_USER)
    except KeyError:
        return Check(name, "ok", "none: not a packaged install, the daemon runs as whoever "
                     "starts it")
    problems, fixes = [], []
    if user.pw_uid != cfg.runtime.uid:
        problems.append(f"its uid is {user.pw_uid} but [runtime] uid is {cfg.runtime.uid}")
        fixes.append(f"set [runtime] uid = {user.pw_uid} in {cfg.source}")
    try:
        docker_group = grp.getgrnam("docker")
        if DAEMON_USER not in docker_group.gr_mem and user.pw_gid != docker_group.gr_gid:
            problems.append("it is not in the docker group")
            fixes.append(f"adduser {DAEMON_USER} docker")
    except KeyError:
        problems.append("there is no docker group")
        fixes.append(f"install docker.io, then adduser {DAEMON_USER} docker")
    if problems:
        return Check(name, "fail", "; ".join(problems), "; ".join(fixes))
    return Check(name, "ok", f"uid {user.pw_uid} (= [runtime] uid), in the docker group")


def free_disk(cfg) -> Check:
    folder = Path(cfg.paths.data_dir)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    detail = f"{free / 1024**3:.1f} GiB free for {cfg.paths.data_dir}"
    fix = "free some space, or move [paths] data_dir to a bigger disk"
    if free < DISK_FAIL_BYTES:
        return Check("disk", "fail", detail, fix)
    if free < DISK_WARN_BYTES:
        return Check("disk", "warn", detail, fix)
    return Check("disk", "ok", detail)


def unit() -> Check:
    name = UNIT
    if not Path("/run/systemd/system").exists() or shutil.which("systemctl") is None:
        return Check(name, "ok", "systemd does not run this machine: start the daemon with "
                     "`appliance serve`")
    state = subprocess.run(["systemctl", "is-active", UNIT], capture_output=True,
                           text=True, timeout=ANSWER_SECONDS).stdout.strip()
    if state == "active":
        return Check(name, "ok", "active")
    if state == "failed":
        return Check(name, "fail", "failed",
                     f"read why: journalctl -u {UNIT} -n 50; then systemctl restart {UNIT}")
    return Check(name, "warn", state or "unknown", f"systemctl enable --now {UNIT}")


def odoo_sources(cfg) -> list[Check]:
    checks = []
    for version, spec in cfg.odoo.versions.items():
        local = Path(spec.source)
        state = ("local tree" if (local / "odoo-bin").exists() else
                 "cloned" if (cfg.paths.odoo / "src" / version / "odoo-bin").exists()
                 else f"to be cloned from {spec.source} at {spec.ref} by the first build")
        checks.append(Check(f"odoo {version}", "ok", state))
    return checks


def backup_checks(cfg) -> list[Check]:
    """The latest verification of each production's backups (a failure is red), the
    latest check of the repository, and the copy targets."""
    try:
        with psycopg.connect(store_db.conninfo(cfg.database), connect_timeout=ANSWER_SECONDS,
                             row_factory=dict_row) as conn:
            if conn.execute("SELECT to_regclass('backup_verifications') AS t").fetchone()["t"] \
                    is None:
                return []  # migrations pending: said by the state database's check
            return (_verifications(conn) + [_repository_check(conn)]
                    + _copy_targets(conn))
    except psycopg.Error:
        return []  # the state database's own check says why


def _verifications(conn) -> list[Check]:
    latest = {row["project_id"]: row for row in checks_store.latest_verifications(conn)}
    productions = conn.execute(
        """SELECT p.id, p.name, EXISTS (SELECT 1 FROM backups b WHERE b.project_id = p.id
                  AND b.state = 'done') AS backed_up
           FROM projects p JOIN branches br ON br.project_id = p.id
           AND br.stage = 'production' ORDER BY p.name""").fetchall()
    checks, now = [], datetime.now(timezone.utc)
    for project in productions:
        name, row = f"backups of {project['name']}", latest.get(project["id"])
        fix = f"appliance backup verify {project['name']}"
        if row is None:
            if project["backed_up"]:
                checks.append(Check(name, "warn", "no backup verified yet", fix))
            continue
        when = f"backup #{row['backup_id']} verified {row['finished_at']:%Y-%m-%d %H:%M} UTC"
        if row["state"] != "ok":
            first = (row["error"] or "failed").splitlines()[0]
            checks.append(Check(name, "fail", f"{when}: FAILED: {first}",
                                "read the problems on the project's Backups tab; make a "
                                f"new backup and verify it: {fix}"))
        elif now - row["finished_at"] > VERIFY_OVERDUE:
            checks.append(Check(name, "warn", f"{when}: no verification since",
                                "is the daemon running? [backup] verify = true?"))
        else:
            checks.append(Check(name, "ok", when))
    return checks


def _repository_check(conn) -> Check:
    row, name = checks_store.latest_check(conn), "backup repository"
    fix = "appliance backup verify --repository"
    if row is None:
        return Check(name, "ok", "not checked yet (weekly restic check)")
    when = f"checked {row['finished_at']:%Y-%m-%d %H:%M} UTC ({row['read_data_subset']} read)"
    if not row["ok"]:
        return Check(name, "fail", f"{when}: {(row['output'].strip().splitlines() or ['failed'])[-1]}",
                     "restic's report is in the daemon's log; restore from a copy "
                     f"target if packs are damaged, then: {fix}")
    if datetime.now(timezone.utc) - row["finished_at"] > CHECK_OVERDUE:
        return Check(name, "warn", f"{when}: no check since", fix)
    return Check(name, "ok", f"{when}: no errors")


def _copy_targets(conn) -> list[Check]:
    checks, now = [], datetime.now(timezone.utc)
    for row in checks_store.targets(conn):
        name = f"copy target {row['name']}"
        if row["failing_since"] is None:
            last = row["last_ok_at"]
            checks.append(Check(name, "ok", f"{row['location']}: " + (
                f"last copy {last:%Y-%m-%d %H:%M} UTC" if last else "no copy yet")))
            continue
        status = "warn" if now - row["failing_since"] > COPY_FAILING_WARN else "ok"
        checks.append(Check(name, status, f"{row['location']}: failing since "
                            f"{row['failing_since']:%Y-%m-%d %H:%M} UTC: {row['last_error']}",
                            f"appliance backup target retry {row['name']}"
                            if status == "warn" else ""))
    return checks
