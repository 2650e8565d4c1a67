"""An apt upgrade keeps every build serving. Version N is installed from the signed
repository folder (a file: source) into a Debian 12 container; its daemon runs there as
the `appliance` user the way the unit runs it (the container has no systemd), on the
host's Docker engine and PostgreSQL; a branch is pushed and its build runs. Then N+1, with
a new migration, comes through `apt-get upgrade`, the daemon restarts once as systemd
would restart it, and the build's address is asked every 100 ms throughout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from appliance import layout
from tests.host import ROOT, STUB_ODOO, db_password
from tests.integration.harness import Appliance, make_repo, push, sql
from tests.packaging.helpers import Container, build_deb, docker

pytestmark = pytest.mark.docker

PROBE_MIGRATION = "appliance/store/migrations/900_upgrade_probe.sql"
POLL_SECONDS = 0.1
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SOURCES = "/etc/apt/sources.list.d/odoo-appliance.list"
# apt-get update of the appliance's source only (the mirror's lists are in the image).
APT_UPDATE = (f"apt-get update -o Dir::Etc::sourcelist={SOURCES} -o Dir::Etc::sourceparts=- "
              "-o APT::Get::List-Cleanup=0")
# The unit's ExecStart, as its User= and Group= (and the environment systemd gives it).
DAEMON = ("echo $$ > /run/appliance-test.pid; exec setpriv --reuid=appliance "
          "--regid=appliance --init-groups -- env -i PATH=/usr/bin:/bin HOME=/var/lib/appliance "
          "LANG=C.UTF-8 APPLIANCE_CONFIG=/etc/appliance/appliance.toml /usr/bin/appliance serve "
          ">> {log} 2>&1")


class Poller(threading.Thread):
    """GETs a URL every POLL_SECONDS until stopped; counts requests and failures."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.requests, self.failures = url, 0, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.requests += 1
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    if answer.status != 200:
                        self.failures.append(f"{time.time():.1f}: HTTP {answer.status}")
            except OSError as exc:
                self.failures.append(f"{time.time():.1f}: {exc}")
            self.stopping.wait(POLL_SECONDS)


def signed_repository(repo: Path, keyring: Path, *debs: Path) -> None:
    result = subprocess.run(["bash", str(ROOT / "packaging" / "apt-repo.sh"), str(repo),
                             *map(str, debs)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "APT_REPO_GNUPGHOME": str(keyring)})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def app(tmp_path):
    appliance = Appliance(tmp_path, "upgrade")
    yield appliance
    appliance.close()


def started_at(app: Appliance, build_id: int) -> str:
    """When the build's server container started (its id and Docker's StartedAt)."""
    server, = app.svc.docker.find(build_id=build_id, role="server")
    state = json.loads(docker("inspect", "--format={{json .State}}", server.id).stdout)
    return f"{server.id} {state['StartedAt']}"


def start_daemon(container: Container, app: Appliance) -> None:
    docker("exec", "--detach", container.name, "bash", "-c",
           DAEMON.format(log=app.log_path))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(app.url + "/-/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the daemon did not answer: {app.log_path.read_text()[-3000:]}")


def stop_daemon(container: Container) -> None:
    container.run("pid=$(cat /run/appliance-test.pid); kill -TERM $pid; "
                  "for i in $(seq 600); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; "
                  "exit 1")


def configure(container: Container, app: Appliance, data: Path) -> None:
    """The admin's edit of the conffile: this test's database, port, folders, stand-in
    Odoo; and the host role's password."""
    config = app.config_path.read_text()
    config = re.sub(r'password_file = ".*"', 'password_file = "/etc/appliance/db-password"',
                    config)
    config = re.sub(r'data_dir = ".*"', f'data_dir = "{data}"', config)
    # Under the data folder, which the host sees at the same path (the engine mounts it).
    config = re.sub(r'bytecode_dir = ".*"', f'bytecode_dir = "{data}/bytecode"', config)
    docker("exec", "--interactive", container.name, "bash", "-c",
           "cat > /etc/appliance/appliance.toml", input="# edited here\n" + config)
    docker("exec", "--interactive", container.name, "bash", "-c",
           "cat > /etc/appliance/db-password", input=db_password() + "\n")


def test_an_apt_upgrade_keeps_the_build_serving_migrates_and_keeps_the_config_edit(
        app, deb, commit, deb_image, tmp_path):
    overlay = tmp_path / "overlay"
    (overlay / PROBE_MIGRATION).parent.mkdir(parents=True)
    (overlay / PROBE_MIGRATION).write_text("CREATE TABLE upgrade_probe (id integer);\n")
    version = re.match(r"odoo-appliance_(.+)_all\.deb", deb.name).group(1)
    newer = build_deb(tmp_path / "n1", commit, f"{version}+upgrade1", overlay)
    repo, keyring = tmp_path / "repo", tmp_path / "gnupg"
    signed_repository(repo, keyring, deb)

    data = tmp_path / "data"
    data.mkdir()
    socket_group = Path("/var/run/docker.sock").stat().st_gid
    container = Container(deb_image, deb, [
        "--network", "host", "--volume", "/var/run/docker.sock:/var/run/docker.sock",
        "--volume", f"{repo}:/repo:ro", "--volume", f"{data}:{data}",
        "--volume", f"{STUB_ODOO}:{STUB_ODOO}:ro", "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"])
    try:
        container.run(f"groupmod -o -g {socket_group} docker")
        container.run(f"echo 'deb [signed-by=/repo/odoo-appliance.gpg] file:/repo stable main'"
                      f" > {SOURCES} && {APT_UPDATE} && apt-get install -y odoo-appliance")
        assert container.run("dpkg-query -W -f='${Version}' odoo-appliance") == version
        container.run(f"chown appliance:appliance {data}")
        configure(container, app, data)
        app.log_path = data / "daemon.log"
        start_daemon(container, app)

        token = app.make_user("admin")
        container.run("setpriv --reuid=appliance --regid=appliance --init-groups -- "
                      "env HOME=/var/lib/appliance appliance project create acme")
        work = make_repo(tmp_path / "work", "green")
        _, ids = push(work, app.remote("acme", "admin", token), "feature")
        build = app.wait_build(ids[0], timeout=300)
        assert (build["state"], build["result"]) == ("running", "success"), build
        url = layout.build_url(app.config, build) + "web/health"
        server_started = started_at(app, build["id"])

        poller = Poller(url)
        poller.start()
        time.sleep(1)
        signed_repository(repo, keyring, newer)
        upgrade = container.run(f"{APT_UPDATE} && apt-get upgrade -y")
        stop_daemon(container)  # what the package's restart after an upgrade does
        start_daemon(container, app)
        time.sleep(2)
        poller.stopping.set()
        poller.join()

        assert "Setting up odoo-appliance" in upgrade
        assert container.run("dpkg-query -W -f='${Version}' odoo-appliance") \
            == f"{version}+upgrade1"
        assert poller.failures == [] and poller.requests > 30, poller.failures
        assert sql(app.dbname, "SELECT version FROM schema_migrations WHERE version = 900")
        config = container.run("cat /etc/appliance/appliance.toml")
        assert config.startswith("# edited here\n") and str(data) in config
        assert started_at(app, build["id"]) == server_started  # never restarted
        print(f"upgrade: {poller.requests} requests, {len(poller.failures)} failed")
    finally:
        container.run("kill -TERM $(cat /run/appliance-test.pid) 2>/dev/null; true",
                      check=False)
        container.remove()
