"""What a build's terminal can ask the daemon, and what it cannot: the control socket
(shell.control) of a real daemon, asked from inside real server containers.

One daemon per module with two running builds of `acme`: a development build of
`feature` and production (`main`). Terminals are opened as the session code opens them
(their control token is in their environment); requests are sent from inside the
containers with the image's odoo-update / odoo-restart, or raw, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from appliance.shell import control, sessions
from appliance.store import builds as builds_store
from appliance.store import users as users_store
from tests.integration.harness import Appliance, make_repo, push

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Sends stdin as it is to the control socket and prints the answers.
RAW_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect("/run/appliance/control.sock")
s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR)
sys.stdout.write(s.makefile("rb").read().decode())
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shell-control")
    app = Appliance(folder, "shellctl")
    try:
        app.start()
        app.token = app.make_user("admin")
        app.make_user("dev", admin=False)
        project = app.make_project("acme")
        with app.db.transaction() as conn:
            users_store.add_member(conn, project["id"],
                                   users_store.user_by_name(conn, "dev")["id"], "developer")
        repo = make_repo(folder / "repo", "green")
        app.builds = {}
        for branch in ("main", "feature"):
            _, (build_id,) = push(repo, app.remote("acme", "admin", app.token), branch)
            app.builds[branch] = app.wait_build(build_id, timeout=300)
            assert app.builds[branch]["state"] == "running", app.builds[branch]["reason"]
        yield app
    finally:
        app.close()


def user(app, name: str) -> dict:
    with app.db.transaction() as conn:
        return users_store.user_by_name(conn, name)


def container(app, build_id: int) -> str:
    return sessions.server_container(app.svc, build_id).id


def in_container(app, build_id: int, *command: str, stdin: bytes = b"",
                 env: dict | None = None) -> subprocess.CompletedProcess:
    options = [f"-e{key}={value}" for key, value in (env or {}).items()]
    return subprocess.run(["docker", "exec", "-i", "-u", "990:990", *options,
                           container(app, build_id), *command],
                          input=stdin, capture_output=True, timeout=120)


def raw(app, build_id: int, payload: bytes) -> list[dict]:
    result = in_container(app, build_id, "python3", "-c", RAW_CLIENT, stdin=payload)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


@pytest.fixture
def terminal(app):
    """A terminal on the development build, opened by the admin."""
    opened = sessions.open_terminal(app.svc, user(app, "admin"), app.builds["feature"]["id"],
                                    24, 80, "browser")
    yield opened
    sessions.close_terminal(app.svc, opened)


def test_the_container_sees_its_own_control_socket_read_only_and_nothing_else(app):
    feature = app.builds["feature"]["id"]
    listing = in_container(app, feature, "ls", "-A", "/run/appliance").stdout.decode().split()
    assert listing == ["control.sock"]
    planted = in_container(app, feature, "sh", "-c",
                           "ln -s /etc /run/appliance/x || rm /run/appliance/control.sock")
    assert planted.returncode != 0 and b"Read-only file system" in planted.stderr
    mounts = json.loads(subprocess.run(["docker", "inspect", container(app, feature)],
                                       capture_output=True, check=True).stdout)[0]["Mounts"]
    (mount,) = [m for m in mounts if m["Destination"] == "/run/appliance"]
    assert not mount["RW"]
    assert mount["Source"] == str(control.folder(app.config, feature))


def test_requests_without_a_live_terminal_of_this_build_are_refused(app, terminal):
    production = app.builds["main"]["id"]
    feature = app.builds["feature"]["id"]
    # No token at all (a process of the build's own code, not a terminal).
    refused = in_container(app, feature, "odoo-restart")
    assert refused.returncode == 1 and b"no terminal token" in refused.stderr
    # The token of a terminal on another build: production's socket knows it not.
    answers = raw(app, production, json.dumps({"action": "restart",
                                               "token": terminal.token}).encode() + b"\n")
    assert [list(a) for a in answers] == [["error"]]
    assert "not one of this build's open terminals" in answers[0]["error"]
    # A closed terminal's token.
    sessions.close_terminal(app.svc, terminal)
    answers = raw(app, feature, json.dumps({"action": "restart",
                                            "token": terminal.token}).encode() + b"\n")
    assert "not one of this build's open terminals" in answers[0]["error"]
    with app.db.transaction() as conn:
        assert builds_store.get_build(conn, feature)["state"] == "running"


@pytest.mark.parametrize("payload, reason", [
    (b"x" * 20000 + b"\n", "at most 4096 bytes"),
    (b"{not json\n", "one line of JSON"),
    (b"[1, 2]\n", "a JSON object"),
    (b'{"action": "format_disk", "token": "t"}\n', "unknown action"),
    (b'{"action": "update", "modules": ["../../etc"], "token": "t"}\n', "not a module name"),
    (b'{"action": "update", "modules": ["sale;reboot"], "token": "t"}\n', "not a module name"),
    (b'{"action": "restart", "modules": ["sale"], "token": "t"}\n', "takes no modules"),
    (b"\xff\xfe\n", "one line of JSON"),
])
def test_malformed_or_oversized_requests_are_refused_with_the_reason(app, payload, reason):
    answers = raw(app, app.builds["feature"]["id"], payload)
    assert len(answers) == 1 and reason in answers[0]["error"], answers


def test_a_terminal_whose_user_lost_the_right_can_no_longer_ask(app):
    feature = app.builds["feature"]["id"]
    terminal = sessions.open_terminal(app.svc, user(app, "dev"), feature, 24, 80, "browser")
    try:
        with app.db.transaction() as conn:
            conn.execute("""INSERT INTO project_permissions (project_id, stage, action, role,
                                                             allowed)
                            SELECT id, 'development', 'rebuild', 'developer', false
                            FROM projects WHERE name = 'acme'""")
        answers = raw(app, feature, json.dumps({"action": "restart",
                                                "token": terminal.token}).encode() + b"\n")
        assert "does not allow" in answers[0]["error"]
    finally:
        with app.db.transaction() as conn:
            conn.execute("DELETE FROM project_permissions")
        sessions.close_terminal(app.svc, terminal)


def test_odoo_update_on_production_queues_the_production_pipeline(app):
    production = app.builds["main"]
    terminal = sessions.open_terminal(app.svc, user(app, "admin"), production["id"], 24, 80,
                                      "browser")
    try:
        result = in_container(app, production["id"], "odoo-update", "demo_ok",
                              env={sessions.CONTROL_TOKEN_NAME: terminal.token})
    finally:
        sessions.close_terminal(app.svc, terminal)
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "only through its pipeline" in output
    queued = int(output.split("build #", 1)[1].split()[0])
    build = app.wait_build(queued, timeout=300)
    assert build["state"] == "running", build["reason"]
    assert build["trigger"] == "shell" and build["commit"] == production["commit"]
    assert build["deploy"] == "full" and "demo_ok (odoo-update)" in build["plan"]["summary"]
    steps = {step["name"]: step["state"] for step in app.steps(queued)}
    assert steps["snapshot"] == "done" and steps["update"] == "done"
    app.builds["main"] = build


def test_odoo_update_on_development_streams_the_update_then_restarts_the_server(app):
    feature = app.builds["feature"]
    terminal = sessions.open_terminal(app.svc, user(app, "admin"), feature["id"], 24, 80,
                                      "browser")
    result = in_container(app, feature["id"], "odoo-update", "demo_ok",
                          env={sessions.CONTROL_TOKEN_NAME: terminal.token})
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "updating demo_ok" in output and "odoo.modules.loading" in output
    assert "restarting the server" in output
    deadline = time.monotonic() + 120
    while True:  # the server goes, and comes back on a new container
        with app.db.transaction() as conn:
            build = builds_store.get_build(conn, feature["id"])
        if build["state"] == "running" and build["host_port"] != feature["host_port"]:
            break
        assert time.monotonic() < deadline, build
        time.sleep(0.3)
    sessions.close_terminal(app.svc, terminal)
    with app.db.transaction() as conn:
        messages = [row["message"] for row in conn.execute(
            "SELECT message FROM events WHERE kind = 'shell_command' ORDER BY id")]
    assert "odoo-update demo_ok from the shell by admin" in messages
