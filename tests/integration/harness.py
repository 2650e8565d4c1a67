"""A real appliance daemon in a subprocess, and real git pushes to it.

The daemon gets its own scratch state database, data folder and port; it builds with the
stand-in Odoo on the real Docker engine and the host's PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from appliance import config as config_mod
from appliance.services import Services
from appliance.jobs import containers
from appliance.store import builds as builds_store
from appliance.store import mails as mails_store
from appliance.store import db as store_db
from appliance.store import users as users_store
from tests.host import (ADDONS, ROOT, STATE_DIR, STUB_ODOO, TEST_PACKAGES,
                        create_scratch_database, db_password, drop_scratch_database,
                        run_prefix)

FINAL_STATES = ("running", "stopped", "failed", "done", "dropped")
BUILD_LINE = re.compile(r"build #(\d+) queued: (\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(folder: Path, dbname: str, port: int, odoo_source: Path = STUB_ODOO,
                 packages: list[str] | None = None, max_servers: int = 8,
                 mail_port: int = 2525) -> Path:
    ca_bundle = os.environ.get("APPLIANCE_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    packages = ", ".join(f'"{p}"' for p in (packages or TEST_PACKAGES))
    path = folder / "appliance.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
threads = 8
secret_key = "test-secret"

[paths]
data_dir = "{folder / 'data'}"

[database]
dsn = "host=127.0.0.1 dbname={dbname} user=appliance"
password_file = "{STATE_DIR / 'db-password'}"
role_prefix = "{run_prefix()}"
db_prefix = "{run_prefix()}"

[workers]
builds = 2
poll_seconds = 0.5
max_running_servers = {max_servers}

[runtime]
debian_packages = [{packages}]
ca_bundle = "{ca_bundle if Path(ca_bundle).exists() else ''}"
memory = "1g"
# One cache for every test daemon of this host: each would compile the same files again.
bytecode_dir = "{STATE_DIR / 'bytecode'}"

[builds]
health_timeout = 60

[mail]
port = {mail_port}
max_message_bytes = 1048576
max_recipients = 10

[odoo.versions."18.0"]
source = "{odoo_source}"
ref = ""
""")
    return path


class Appliance:
    """A daemon under test, with an admin, a token and helpers to push and wait."""

    def __init__(self, folder: Path, name: str, odoo_source: Path = STUB_ODOO,
                 packages: list[str] | None = None, max_servers: int = 8):
        self.folder = folder
        self.dbname = f"appliance_it_{name}_{os.getpid()}"
        self.port = free_port()
        self.mail_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.db = None
        self.log_path = folder / "daemon.log"
        create_scratch_database(self.dbname)
        try:
            self.config_path = write_config(folder, self.dbname, self.port, odoo_source,
                                            packages, max_servers, self.mail_port)
            self.config = config_mod.load(self.config_path, env={})
            self.db = store_db.Database(self.config.database, max_size=4).open()
            store_db.migrate(self.db)
            self.svc = Services(self.config, self.db)
        except BaseException:  # no close() will come: the database must not outlive us
            if self.db is not None:
                self.db.close()
            drop_scratch_database(self.dbname)
            raise

    # -- the daemon ---------------------------------------------------------------
    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "--config", str(self.config_path), "serve"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daemon did not answer within 60 s")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def close(self) -> None:
        """Stop the daemon, remove its containers, networks and build databases, drop its
        state database. Each step runs even when one before it failed (the first failure
        is raised at the end): a failing test must not leave a database behind."""
        failures = []
        for step in (self._stop_daemon, self._remove_containers, self._remove_networks,
                     self._drop_build_databases, self.db.close,
                     lambda: drop_scratch_database(self.dbname)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 (each step of the clean-up is tried)
                failures.append(exc)
        if failures:
            raise failures[0]

    def _stop_daemon(self) -> None:
        if self.process is None:
            return
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None
            raise

    def _remove_containers(self) -> None:
        for info in self.svc.docker.find():
            self.svc.docker.remove(info.id)

    def _remove_networks(self) -> None:
        with self.db.transaction() as conn:
            projects = [row["name"] for row in conn.execute("SELECT name FROM projects")]
        for project in projects:  # networks are cut from a pool of the host's addresses
            self.svc.docker.remove_network(project)

    def _drop_build_databases(self) -> None:
        with self.db.transaction() as conn:
            names = [row["database"] for row in conn.execute(
                "SELECT database FROM builds WHERE database IS NOT NULL")]
        for name in names:
            self.svc.postgres.drop_database(name)

    # -- people and projects -------------------------------------------------------
    def make_user(self, name: str = "admin", admin: bool = True) -> str:
        """Create a user; returns a git token for it."""
        with self.db.transaction() as conn:
            users_store.create_user(conn, name, "password-" + name, is_admin=admin)
            return users_store.create_token(conn, name)

    def make_project(self, name: str, **kwargs) -> dict:
        from appliance.jobs import projects
        return projects.create(self.svc, name, **kwargs)

    # -- git ---------------------------------------------------------------------
    def remote(self, project: str, user: str, token: str) -> str:
        return f"http://{user}:{token}@127.0.0.1:{self.port}/git/{project}.git"

    def wait_build(self, build_id: int, timeout: float = 300,
                   states=FINAL_STATES) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            with self.db.transaction() as conn:
                build = builds_store.get_build(conn, build_id)
            if build["state"] in states:
                return build
            if time.monotonic() > deadline:
                raise AssertionError(f"build {build_id} still {build['state']} after {timeout} s;"
                                     f" daemon log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def steps(self, build_id: int) -> list[dict]:
        with self.db.transaction() as conn:
            return builds_store.steps(conn, build_id)


@contextlib.contextmanager
def production_appliance(folder: Path, name: str, project: str, *, env: dict | None = None,
                         files: dict | None = None, timeout: float = 300):
    """A daemon with an admin (its git token in `.token`) and `project`, whose production
    runs tests/addons/stages/v1 (plus `files`) as `.build`; `env` is set for the daemon,
    whose own daily backups are off (they would run beside the tests' own)."""
    appliance = Appliance(folder, name)
    patch = pytest.MonkeyPatch()
    for key, value in {"APPLIANCE_BACKUP_DAILY": "false", **(env or {})}.items():
        patch.setenv(key, value)
    try:
        appliance.start()
        appliance.token = appliance.make_user("admin")
        appliance.make_project(project)
        repo = make_repo(folder / "work", "stages/v1", files=files)
        _, (build_id,) = push(repo, appliance.remote(project, "admin", appliance.token), "main")
        build = appliance.wait_build(build_id, timeout=timeout)
        assert build["state"] == "running", build["reason"]
        appliance.build = build
        yield appliance
    finally:
        appliance.close()
        patch.undo()


class ShopWork:
    """A work tree whose content is replaced by one revision of the shop
    (tests/addons/stages/<revision>), then pushed to the project `shop` of a daemon whose
    `admin` has the git token `app.token`."""

    def __init__(self, app: Appliance, folder: Path):
        self.app, self.folder = app, folder
        folder.mkdir()
        git(folder, "init", "-q", "-b", "main")

    def commit(self, revision: str, message: str | None = None) -> None:
        for entry in self.folder.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        shutil.copytree(ADDONS / "stages" / revision, self.folder, dirs_exist_ok=True)
        git(self.folder, "add", "-A")
        git(self.folder, "commit", "-q", "--allow-empty", "-m", message or revision)

    def push(self, branch: str = "main") -> dict:
        result, ids = push(self.folder, self.app.remote("shop", "admin", self.app.token),
                           branch)
        self.pushed = result.stderr  # what git printed of the appliance's answer
        assert len(ids) == 1
        return self.app.wait_build(ids[0], timeout=240)


def sql(dbname: str, query: str, params=()):
    """A query on one of the host's databases as the appliance's role; its rows, if any."""
    info = psycopg.conninfo.make_conninfo(host="127.0.0.1", dbname=dbname, user="appliance",
                                          password=db_password())
    with psycopg.connect(info, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


def make_repo(folder: Path, addon_set: str | None = None, files: dict | None = None) -> Path:
    """A git work tree with one commit holding tests/addons/<addon_set> and/or files."""
    folder.mkdir(parents=True)
    if addon_set:
        shutil.copytree(ADDONS / addon_set, folder, dirs_exist_ok=True)
    for name, content in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", f"Add {addon_set or 'files'}")
    return folder


def git(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "a@example.com",
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(folder)}
    result = subprocess.run(["git", *args], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def push(folder: Path, remote: str, branch: str, check: bool = True):
    """Push HEAD to branch; returns (process, build ids announced in the output)."""
    result = git(folder, "push", remote, f"HEAD:refs/heads/{branch}", check=check)
    ids = [int(m.group(1)) for m in BUILD_LINE.finditer(result.stderr)]
    return result, ids


# -- Odoo inside a build -------------------------------------------------------------

def odoo_shell(app, build: dict, script: str) -> subprocess.CompletedProcess:
    """Run a script in `odoo-bin shell` in the build's server container."""
    name = containers.container_name(app.svc, build["id"], "server")
    return subprocess.run(
        ["docker", "exec", "-i", name, "python3", f"{containers.ODOO_DIR}/odoo-bin", "shell"],
        input=script, capture_output=True, text=True, timeout=120)


def send_from_odoo(app, build: dict, subject: str) -> None:
    script = f"""
server = env['ir.mail_server']
message = server.build_email('shop@example.com', ['customer@example.org'], {subject!r},
                             '<p>Your invoice</p>', subtype='html')
server.send_email(message)
print('sent')
"""
    result = odoo_shell(app, build, script)
    assert result.returncode == 0 and "sent" in result.stdout, result.stderr[-3000:]


def mails_of(app, build_id: int) -> list[dict]:
    with app.db.transaction() as conn:
        return mails_store.list_mails(conn, build_id=build_id)


def wait_for_mail(app, build_id: int, subject: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in mails_of(app, build_id):
            if mail["subject"] == subject:
                return mail
        time.sleep(0.2)
    raise AssertionError(f"no mail {subject!r} for build #{build_id}")
