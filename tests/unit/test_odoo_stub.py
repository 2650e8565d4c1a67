"""The stand-in Odoo, run on the host against the local PostgreSQL.

Each test builds its command line with the appliance's own builders
(`install_command`, `server_command`), runs it under Debian's python3 (which has
python3-psycopg2) as user nobody (the stand-in refuses root), connects with a
password over TCP and reads the log with `classify`. The module is skipped when
PostgreSQL, root (to administer the cluster through the postgres account),
setpriv or Debian's python3 with psycopg2 is missing.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.runtime.odoo import (
    addons_dirs, classify, find_modules, install_command, parse_log, server_command,
    update_command,
)

pytestmark = pytest.mark.slow  # the stand-in Odoo run in subprocesses, a database a test

HERE = Path(__file__).resolve().parent
STUB_SOURCE = HERE.parent / "odoo_stub"
SAMPLE_REPOS = HERE.parent / "addons"
DEBIAN_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ROLE = "stubtest"
RUN_TIMEOUT = 60  # seconds for one install; a normal one takes about one


def _missing_requirement():
    if os.geteuid() != 0:
        return "needs root (to create a role through the postgres account and to run as nobody)"
    if not shutil.which("setpriv") or not shutil.which("runuser"):
        return "needs setpriv and runuser (util-linux)"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import psycopg2"], capture_output=True)
    if probe.returncode != 0:
        return f"needs {DEBIAN_PYTHON} with psycopg2 (apt-get install python3-psycopg2)"
    if admin_sql("SELECT 1", check=False).returncode != 0:
        return "PostgreSQL is not reachable through the postgres account"
    return None


def admin_sql(sql, database="postgres", check=True):
    """Run SQL as the postgres superuser (peer authentication on the local socket)."""
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-d", database, "-c", sql],
        capture_output=True, text=True, check=check, timeout=30,
    )


@pytest.fixture(scope="module", autouse=True)
def requirements():
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def role_password(requirements):
    password = secrets.token_hex(12)
    exists = admin_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'").stdout.strip()
    verb = "ALTER" if exists else "CREATE"
    admin_sql(f"{verb} ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'")
    yield password
    admin_sql(f"DROP ROLE IF EXISTS {ROLE}", check=False)


@pytest.fixture(scope="module")
def stub_tree(requirements):
    """A copy of the stand-in readable by nobody, like the appliance's read-only mount."""
    root = Path(tempfile.mkdtemp(prefix="odoo-stub-src-"))
    shutil.copytree(STUB_SOURCE, root / "odoo", ignore=shutil.ignore_patterns("__pycache__"))
    _open_up(root)
    yield root / "odoo"
    shutil.rmtree(root)


@pytest.fixture
def database(role_password):
    name = f"stubtest_{secrets.token_hex(4)}"
    admin_sql(f"CREATE DATABASE {name} OWNER {ROLE}")
    yield name
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="odoo-stub-run-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _open_up(root):
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stub:
    """Runs the stand-in the way the appliance would, with one repository."""

    def __init__(self, stub_tree, workdir, database, password, repo_name):
        self.workdir = workdir
        self.database = database
        self.password = password
        self.repo = workdir / "repo"
        shutil.copytree(SAMPLE_REPOS / repo_name, self.repo)
        _open_up(self.repo)
        modules = find_modules(self.repo)
        self.modules = [m.name for m in modules]
        self.logfile = workdir / "odoo.log"
        self.port = free_port()
        self.common = dict(
            odoo_bin=str(stub_tree / "odoo-bin"), database=database, db_host="127.0.0.1",
            db_user=ROLE, db_password=None, data_dir=str(workdir / "data"),
            addons_path=[str(self.repo / d) for d in addons_dirs(self.repo, modules)],
            http_port=self.port, logfile=str(self.logfile),
        )

    def command(self, builder, **kwargs):
        command = builder(**self.common, **kwargs)
        assert command[0] == "python3"
        return NOBODY + [DEBIAN_PYTHON, *command[1:]]

    @property
    def env(self):
        return {"PATH": "/usr/bin:/bin", "PGPASSWORD": self.password, "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, builder, **kwargs):
        """(exit code, log text, stderr) of a --stop-after-init run."""
        self.logfile.unlink(missing_ok=True)
        done = subprocess.run(self.command(builder, **kwargs), env=self.env, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT, cwd=self.workdir)
        log = self.logfile.read_text() if self.logfile.exists() else ""
        return done.returncode, log, done.stderr

    def install(self, modules=None, demo=True, test_enable=True, **kwargs):
        return self.run(install_command, modules=modules or self.modules, demo=demo,
                        test_enable=test_enable, **kwargs)

    def sql(self, query):
        return admin_sql(query, database=self.database).stdout.strip()


@pytest.fixture
def stub_for(stub_tree, workdir, database, role_password):
    return lambda repo_name: Stub(stub_tree, workdir, database, role_password, repo_name)


# ----------------------------------------------------------------- installs


def test_the_green_addon_installs_and_its_tests_pass(stub_for):
    stub = stub_for("green")
    code, log, stderr = stub.install()
    assert code == 0, log + stderr
    found = classify(log, code, [])
    assert (found.result, found.tests_run) == ("success", 5), found
    assert stub.sql("SELECT state, latest_version, demo FROM ir_module_module WHERE name = 'demo_ok'") \
        == "installed|18.0.1.0.0|t"
    assert stub.sql("SELECT count(*) FROM demo_ok_thing") == "2"
    assert stub.sql("SELECT count(*) FROM ir_config_parameter WHERE key = 'database.uuid'") == "1"
    assert stub.sql("SELECT login FROM res_users WHERE id = 2") == "admin"
    stored = list((stub.workdir / "data" / "filestore" / stub.database).glob("*/*"))
    assert len(stored) == 1, "the attachment test writes one file, content-addressed"
    assert "Warn: Can't find .pfb for face 'Courier'" in stderr


def test_without_demo_no_demo_data_is_loaded(stub_for):
    stub = stub_for("green")
    code, log, _ = stub.install(demo=False, test_enable=False)
    assert code == 0, log
    assert stub.sql("SELECT count(*) FROM demo_ok_thing") == "0"
    assert stub.sql("SELECT demo FROM ir_module_module WHERE name = 'demo_ok'") == "f"


def test_failing_tests_exit_1_and_classify_names_them(stub_for):
    code, log, _ = stub_for("red_test").install()
    assert code == 1, log
    found = classify(log, code, [])
    assert found.result == "failure"
    assert found.reason == "2 failed, 1 error(s) of 4 tests"
    assert sorted((t.name, t.kind) for t in found.failed_tests) == [
        ("TestDemoFailAtInstall.test_assertion_fails", "FAIL"),
        ("TestDemoFailAtInstall.test_raises_error", "ERROR"),
        ("TestDemoFailPostInstall.test_post_install_fails", "FAIL"),
    ]
    assert "Module demo_fail: 1 failures, 1 errors of 3 tests" in log


def test_a_model_without_access_rules_is_a_warning_like_odoos(stub_for):
    code, log, _ = stub_for("yellow").install()
    assert code == 0, log
    found = classify(log, code, [])
    assert found.result == "warning", found
    warning = next(r for r in parse_log(log) if r.level == "WARNING")
    assert warning.text.splitlines()[1:] == [
        "id,name,model_id:id,group_id:id,perm_read,perm_write,perm_create,perm_unlink",
        "demo_warn.access_demo_warn_thing,access_demo_warn_thing,demo_warn.model_demo_warn_thing,"
        "base.group_user,1,0,0,0 ",
    ]


def test_an_import_error_exits_255_with_the_traceback_in_one_record(stub_for):
    code, log, _ = stub_for("import_error").install()
    assert code == 255, log
    critical = [r for r in parse_log(log) if r.level == "CRITICAL"]
    assert critical[0].message.startswith("Couldn't load module demo_import_error")
    failed = critical[-1]
    assert failed.message.startswith("Failed to initialize database")
    assert "Traceback (most recent call last):" in failed.text
    assert failed.text.rstrip().endswith(
        "RuntimeError: deliberate error while importing demo_import_error.models")
    found = classify(log, code, [])
    assert "RuntimeError: deliberate error" in found.reason


def test_a_manifest_that_is_not_a_dict_fails_the_installation(stub_for):
    stub = stub_for("green")
    bad = stub.repo / "demo_bad"
    shutil.copytree(SAMPLE_REPOS / "bad_manifest" / "demo_bad_manifest", bad)
    _open_up(bad)
    code, log, _ = stub.install(modules=["demo_ok"])
    assert code == 255, log
    assert "Failed to initialize database" in classify(log, code, []).reason


def test_an_unknown_module_is_only_a_warning_and_exit_0(stub_for):
    code, log, _ = stub_for("green").install(modules=["does_not_exist"], test_enable=False)
    assert code == 0, log
    assert [r.message for r in parse_log(log) if r.level == "WARNING"] == [
        "invalid module names, ignored: does_not_exist"]
    assert classify(log, code, []).unknown_modules == ["does_not_exist"]


def test_a_dependency_in_a_subfolder_is_installed_first(stub_for):
    stub = stub_for("two_modules")
    code, log, _ = stub.install(modules=["demo_b"])
    assert code == 0, log
    loading = [r.message for r in parse_log(log) if r.message.startswith("Loading module")]
    assert loading == ["Loading module base (1/3)", "Loading module demo_a (2/3)", "Loading module demo_b (3/3)"]
    assert classify(log, code, []).tests_run == 3


def test_test_tags_select_one_test(stub_for):
    code, log, _ = stub_for("red_test").install(
        test_tags="/demo_fail:TestDemoFailAtInstall.test_passes")
    assert code == 0, log
    assert classify(log, code, []).tests_run == 1


# ----------------------------------------------------------------- updates


def test_updating_a_bumped_module_runs_its_migration(stub_for):
    stub = stub_for("green")
    assert stub.install(test_enable=False)[0] == 0
    manifest = stub.repo / "demo_ok" / "__manifest__.py"
    manifest.write_text(manifest.read_text().replace("18.0.1.0.0", "18.0.1.0.1"))
    code, log, _ = stub.run(update_command, modules=["demo_ok"], test_enable=False)
    assert code == 0, log
    assert "module demo_ok: Running migration [18.0.1.0.1>] post-migrate" in log
    assert stub.sql("SELECT latest_version FROM ir_module_module WHERE name = 'demo_ok'") == "18.0.1.0.1"


def test_updating_a_module_that_is_not_installed_does_nothing(stub_for):
    stub = stub_for("green")
    code, log, _ = stub.run(update_command, modules=["demo_ok"], test_enable=False)
    assert code == 0, log
    assert stub.sql("SELECT state FROM ir_module_module WHERE name = 'demo_ok'") == "uninstalled"


# ----------------------------------------------------------------- server


def wait_for(url, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_server_answers_health_and_login_and_stops_on_sigterm(stub_for):
    stub = stub_for("green")
    assert stub.install(test_enable=False)[0] == 0
    process = subprocess.Popen(stub.command(server_command), env=stub.env, cwd=stub.workdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status, headers, body = wait_for(f"http://127.0.0.1:{stub.port}/web/health")
        assert (status, json.loads(body)) == (200, {"status": "pass"})
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        status, _headers, body = wait_for(f"http://127.0.0.1:{stub.port}/web/login")
        assert status == 200 and b"<form" in body
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=2) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = stub.logfile.read_text()
    assert "odoo.service.server: Initiating shutdown" in log
    assert '"GET /web/health HTTP/1.1" 200 -' in log


def test_health_passes_without_a_database_but_login_does_not(stub_for):
    stub = stub_for("green")
    command = stub.command(server_command)
    del command[command.index("-d"):command.index("-d") + 2]
    process = subprocess.Popen(command, env=stub.env, cwd=stub.workdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(f"http://127.0.0.1:{stub.port}/web/health")[0] == 200
        assert wait_for(f"http://127.0.0.1:{stub.port}/web/login")[0] == 500
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=2) == 0


def test_postgresql_unreachable_with_a_database_exits_1(stub_for):
    stub = stub_for("green")
    code, log, stderr = stub.run(server_command, extra=["--db_port", str(free_port()), "--stop-after-init"])
    assert code == 1
    assert "Connection to the database failed" in log
    assert "psycopg2.OperationalError" in stderr


def test_the_stand_in_refuses_to_run_as_root(stub_tree, workdir):
    done = subprocess.run([DEBIAN_PYTHON, str(stub_tree / "odoo-bin"), "-d", "x", "--stop-after-init",
                           "-D", str(workdir / "data")], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 1
    assert "CRITICAL ? odoo: Running as user 'root' is a security risk." in done.stderr


def test_the_stand_in_refuses_the_postgres_role(stub_tree, workdir):
    done = subprocess.run(NOBODY + [DEBIAN_PYTHON, str(stub_tree / "odoo-bin"), "-d", "x", "-r", "postgres",
                                    "--stop-after-init", "-D", str(workdir / "data")],
                          capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "Using the database user 'postgres' is a security risk, aborting." in done.stderr
