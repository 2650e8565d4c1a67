"""A pushed branch attacks from inside its build containers, as a hostile addon would.

Everything a branch holds runs as code in its containers: an addon's `__init__` runs at
install and again when its server starts. The addon below tries each way out that a
security test of a running instance found: swapping the log files the daemon writes or
serves for links to host files, planting bytecode that another project's Odoo would run,
reading its database password from the environment, reaching databases that are not its
project's, and leaving zombies against the process limit. Each attempt must fail, and
the daemon must neither write nor serve a host file.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import psycopg
import pytest

from appliance import layout
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.web import logstream
from appliance.web.app import create_app
from tests.helpers_web import PASSWORD, login
from tests.host import ROOT
from tests.integration.harness import Appliance, make_repo, push

pytestmark = pytest.mark.docker

SECRET = "TOP-SECRET-HOST-CONTENT"

HOSTILE_INIT = r'''
import importlib.util
import json
import marshal
import os
import sys

HOST_TARGET = {host_target!r}
HOST_SECRET = {host_secret!r}
SERVER = "--stop-after-init" not in sys.argv
report = {{"server": SERVER, "attempts": {{}}}}


def attempt(what, action):
    try:
        action()
        report["attempts"][what] = "succeeded"
    except Exception as exc:  # every way of failing is a good outcome here
        report["attempts"][what] = f"failed: {{type(exc).__name__}}"


def swap_for_link(path, target):
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(target, path)


def attack():
    # 1. The daemon writes and serves a build's logs: point every name at a host path.
    for folder in ("/var/log/odoo", "/var/lib/odoo/data"):
        for name in ("install", "update", "neutralize", "pip", "odoo"):
            target = HOST_SECRET if SERVER else HOST_TARGET
            attempt(f"link {{folder}}/{{name}}.log",
                    lambda folder=folder, name=name, target=target:
                    swap_for_link(f"{{folder}}/{{name}}.log", target))

    # 2. Plant bytecode for an Odoo source file that every project's Odoo imports.
    def plant():
        import odoo.release as target
        cached = importlib.util.cache_from_source(target.__file__)
        stat = os.stat(target.__file__)
        code = compile("open('/var/lib/odoo/data/PWNED', 'w').write('planted')\n"
                       "from odoo.release import *\n", target.__file__, "exec")
        data = (importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
                + int(stat.st_mtime).to_bytes(4, "little")
                + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little") + marshal.dumps(code))
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with open(cached, "wb") as handle:
            handle.write(data)

    attempt("plant bytecode", plant)
    attempt("write the root filesystem", lambda: open("/etc/evil", "w").write("x"))

    # 3. Secrets in the environment.
    report["environment"] = sorted(os.environ)

    # 4. Zombies: 600 children whose parent exits at once are orphans for PID 1 to reap.
    if SERVER:
        for _ in range(6):
            middle = os.fork()
            if middle == 0:
                for _ in range(100):
                    try:
                        if os.fork() == 0:
                            os._exit(0)
                    except OSError:
                        break
                os._exit(0)
            os.waitpid(middle, 0)
        import time
        time.sleep(1)
        zombies = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{{pid}}/stat") as handle:
                        zombies += handle.read().rsplit(")", 1)[1].split()[0] == "Z"
                except OSError:
                    pass
        report["zombies"] = zombies

    name = "server" if SERVER else "install"
    with open(f"/var/lib/odoo/data/attack-{{name}}.json", "w") as handle:
        json.dump(report, handle)
    print("ATTACK REPORT", json.dumps(report), flush=True)


if SERVER:
    # Once the server serves: swapping its own log at import would only break it.
    import logging
    import threading
    import time
    logging.raiseExceptions = False
    threading.Timer(2, attack).start()
else:
    attack()
'''

MANIFEST = ('{"name": "Evil", "version": "18.0.1.0.0", "depends": ["base"], '
            '"license": "LGPL-3", "installable": True}\n')


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Host paths the addon aims at: one it tries to make the daemon create, one it
    tries to make the daemon serve."""
    folder = tmp_path_factory.mktemp("host")
    secret = folder / "secret.txt"
    secret.write_text(SECRET + "\n")
    os.chmod(folder, 0o755)
    return {"target": folder / "created-by-the-daemon", "secret": secret}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("appliance"), "escapes")
    try:
        app.start()
        app.token = app.make_user("admin")
        app.make_project("alpha")
        app.make_project("beta")
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def attack(app, host, tmp_path_factory):
    """The hostile addon pushed to project alpha, built and serving."""
    init = HOSTILE_INIT.format(host_target=str(host["target"]), host_secret=str(host["secret"]))
    repo = make_repo(tmp_path_factory.mktemp("repo") / "evil", files={
        "evil/__init__.py": init, "evil/__manifest__.py": MANIFEST})
    result, ids = push(repo, app.remote("alpha", "admin", app.token), "attack")
    assert len(ids) == 1, result.stderr
    build = app.wait_build(ids[0])
    assert build["state"] == "running", (build["reason"], app.log_path.read_text()[-3000:])
    return build


def report(app, build, name, timeout=60):
    """What the addon saw and did, from the file it left in its data dir."""
    path = layout.build_dir(app.config, build["id"]) / "data" / f"attack-{name}.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            logs = subprocess.run(["docker", "logs", "--tail", "50",
                                   f"appl-{app.svc.instance}-{build['id']}-server"],
                                  capture_output=True, text=True).stderr
            raise AssertionError(f"no {path.name}; server output:\n{logs}")
        time.sleep(0.5)
    return json.loads(path.read_text())


def test_the_hostile_addon_ran_at_install_and_in_its_server(app, attack):
    assert report(app, attack, "install")["server"] is False
    assert report(app, attack, "server")["server"] is True


def test_a_log_swapped_for_a_link_never_makes_the_daemon_write_a_host_path(app, attack, host):
    assert not os.path.lexists(host["target"])
    install_log = layout.log_path(app.config, attack["id"], "install")
    assert install_log.is_file() and not install_log.is_symlink()
    assert "ATTACK REPORT" in install_log.read_text()


def test_one_off_containers_see_no_log_folder_and_cannot_write_their_root(app, attack):
    attempts = report(app, attack, "install")["attempts"]
    assert attempts["link /var/log/odoo/install.log"].startswith("failed")
    assert attempts["write the root filesystem"].startswith("failed")


@pytest.fixture(scope="module")
def member(app):
    with app.db.transaction() as conn:
        user = store_users.create_user(conn, "member", PASSWORD)
        project = store_projects.get_project(conn, "alpha")
        store_users.add_member(conn, project["id"], user["id"], "developer")
    web = create_app(app.config, app.db)
    web.config["TESTING"] = True
    client = web.test_client()
    response = login(client, "member")
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return client


def test_a_log_swapped_for_a_link_to_a_host_file_is_never_served(app, attack, member,
                                                                   monkeypatch):
    server = report(app, attack, "server")["attempts"]
    assert server["link /var/log/odoo/odoo.log"] == "succeeded"  # the swap itself works
    monkeypatch.setattr(logstream, "FOLLOW_SECONDS", 1)
    base = f"/builds/{attack['id']}/logs"
    for name in layout.LOG_FILES:
        for url in (f"{base}/{name}", f"{base}/{name}/download", f"{base}/{name}/stream"):
            response = member.get(url)
            body = response.get_data(as_text=True)
            assert response.status_code in (200, 404), (url, response.status_code)
            assert SECRET not in body, url


def test_the_cli_prints_no_host_file_through_a_swapped_log(app, attack):
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(app.config_path), "logs",
         str(attack["id"]), "--file", "odoo"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert SECRET not in result.stdout + result.stderr


def test_bytecode_planted_by_one_project_never_runs_in_another(app, attack, tmp_path):
    assert report(app, attack, "install")["attempts"]["plant bytecode"].startswith("failed")
    assert report(app, attack, "server")["attempts"]["plant bytecode"].startswith("failed")
    repo = make_repo(tmp_path / "green", "green")
    result, ids = push(repo, app.remote("beta", "admin", app.token), "feature")
    build = app.wait_build(ids[0])
    assert (build["state"], build["result"]) == ("running", "success"), build["reason"]
    data = layout.build_dir(app.config, build["id"]) / "data"
    assert not (data / "PWNED").exists()
    assert not (layout.build_dir(app.config, attack["id"]) / "data" / "PWNED").exists()


def test_no_secret_is_in_a_build_containers_environment(app, attack):
    with app.db.transaction() as conn:
        password = store_projects.get_project(conn, "alpha")["db_password"]
    for info in app.svc.docker.find(build_id=attack["id"]):
        attrs = app.svc.docker.client.containers.get(info.id).attrs
        env = attrs["Config"]["Env"] or []
        assert not any(password in item for item in env), info.name
        assert not any(item.startswith("PGPASSWORD=") for item in env), info.name
        assert attrs["HostConfig"]["Init"] is True
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    names = report(app, attack, "server")["environment"]
    assert "PGPASSWORD" not in names


def test_only_the_data_dir_and_the_servers_log_folder_are_writable(app, attack):
    [server] = app.svc.docker.find(build_id=attack["id"], role="server")
    mounts = app.svc.docker.client.containers.get(server.id).attrs["Mounts"]
    writable = sorted(m["Destination"] for m in mounts if m["RW"] and m["Type"] == "bind")
    assert writable == ["/var/lib/odoo/data", "/var/log/odoo"]


def test_six_hundred_orphaned_processes_leave_no_zombies(app, attack):
    assert report(app, attack, "server")["zombies"] == 0


def test_a_project_role_reaches_only_its_own_databases(app, attack):
    with app.db.transaction() as conn:
        alpha = store_projects.get_project(conn, "alpha")
    beta_databases = app.svc.postgres.databases(app.config.database.db_prefix + "beta")
    assert beta_databases, "the beta build of an earlier test made none"
    own = attack["database"]
    socket_dir = app.config.database.socket_dir

    def connect(dbname):
        return psycopg.connect(host=socket_dir, dbname=dbname, user=alpha["db_role"],
                               password=alpha["db_password"], connect_timeout=5)

    with connect(own) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    for dbname in [app.dbname, "postgres", "template1", *beta_databases]:
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(dbname).close()


def test_build_folders_are_closed_to_the_hosts_other_users(app, attack):
    def mode(path):
        return stat.S_IMODE(os.lstat(path).st_mode)

    root = layout.build_dir(app.config, attack["id"])
    for folder in (app.config.paths.data_dir, app.config.paths.repos, app.config.paths.builds):
        assert mode(folder) == 0o750, folder
    for folder in (root, root / "logs", root / "data", root / "server-log"):
        assert mode(folder) == 0o700, folder
    assert mode(root / "src") & 0o007 == 0  # the containers' group reads it, nobody else
    assert mode(root / "odoo.conf") == 0o600
