"""The shell's WebSocket server, real (on whichever websockets the stack has: 10.4 on
Debian 12, the newest from PyPI), in front of the real session code and store: only the
container's side is a stand-in (an echo on a socket pair), so "refused before any
process starts" is read where it matters, in the list of terminals the stand-in was
asked to start.

A forged, expired, reused or borrowed ticket, a foreign or missing Origin, no session
cookie, a user without the right, a build that is not running: each is refused and
nothing starts. A good ticket, to show the refusals are not the only answer, opens a
terminal that carries bytes both ways, resizes it, and leaves its line in the history;
on production, a recording.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
import time

import pytest
import websockets

from appliance.services import Services
from appliance.shell import cast, sessions
from appliance.shell.service import ShellService
from appliance.store import shell as shell_store
from appliance.store import users as store_users
from tests.client_cookies import get_cookie
from tests.helpers_web import csrf

ORIGIN = "http://127.0.0.1:8080"


class EchoPty:
    """A terminal's process side that echoes what it gets, and notes resizes."""

    def __init__(self, rows: int, cols: int):
        self.socket, self._far = socket.socketpair()
        self.sizes = [(rows, cols)]
        self.marker = "0" * 32
        self.closed = False
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self):
        while True:
            try:
                data = self._far.recv(65536)
            except OSError:
                return
            if not data:
                return
            self._far.sendall(b"echo:" + data)

    def setblocking(self, flag):
        self.socket.setblocking(flag)

    def resize(self, rows, cols):
        self.sizes.append((rows, cols))

    def close(self):
        self.closed = True
        self._far.close()
        self.socket.close()
        return 0


class Shell:
    def __init__(self, url: str, started: list):
        self.url, self.started = url, started


@pytest.fixture
def shell(config, db, people, monkeypatch):
    config.server.public_url = ORIGIN
    config.shell.listen = "127.0.0.1:0"
    started = []

    def fake_exec(container_id, user, cmd, env, rows, cols, **_kwargs):
        pty = EchoPty(rows, cols)
        started.append({"user": user, "env": env, "pty": pty})
        return pty

    monkeypatch.setattr(sessions, "server_container", lambda svc, build_id: type(
        "Container", (), {"id": f"container-of-{build_id}"})())
    monkeypatch.setattr(sessions.docker_exec, "open", fake_exec)
    service = ShellService(Services(config, db)).start()
    try:
        yield Shell(f"ws://{config.shell.listen}/-/shell/", started)
    finally:
        service.stop()


def ticket_for(client, build_id: int) -> str:
    response = client.post(f"/builds/{build_id}/shell/ticket",
                           headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["ticket"]


def session_cookie(client) -> str:
    return f"appliance_session={get_cookie(client, 'appliance_session')}"


def _headers(cookie: str | None) -> dict:
    headers = {"Cookie": cookie} if cookie else {}
    params = inspect.signature(websockets.connect).parameters
    return {"additional_headers" if "additional_headers" in params else "extra_headers":
            headers}


def converse(url, *, ticket, cookie, origin=ORIGIN, send=(), rows=24, cols=80,
             hang_up=True):
    """Open, say hello with the ticket, send `send` (bytes, or a dict as JSON), hang up
    (or, with hang_up=False, wait for the server to), and return (what came back, the
    close code and reason the server sent)."""
    async def run():
        received = b""
        async with websockets.connect(url, origin=origin, **_headers(cookie)) as ws:
            try:  # a refusal may come before the hello is even sent
                await ws.send(json.dumps({"ticket": ticket, "rows": rows, "cols": cols}))
                for item in send:
                    await ws.send(json.dumps(item) if isinstance(item, dict) else item)
                    if isinstance(item, bytes):
                        received += await asyncio.wait_for(ws.recv(), 5)
                if hang_up:
                    await ws.close()
                while True:
                    received += await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                frame = closed.rcvd
                return received, frame.code if frame else None, frame.reason if frame else ""
    return asyncio.run(run())


def eventually(check, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def ended(db) -> bool:
    with db.transaction() as conn:
        return conn.execute("SELECT bool_and(ended_at IS NOT NULL) AS ended "
                            "FROM shell_sessions").fetchone()["ended"]


def refused(shell, **kwargs) -> str:
    received, code, reason = converse(shell.url, hang_up=False, **kwargs)
    assert code == 4403, (code, reason)
    assert received == b""
    assert shell.started == []  # refused before any process started
    return reason


def test_a_good_ticket_opens_a_terminal_that_carries_bytes_and_resizes(shell, client_as,
                                                                       make_build, db):
    build = make_build("feature", state="running", database="appl_acme_7")
    owner = client_as("owner")
    received, code, _ = converse(shell.url, ticket=ticket_for(owner, build["id"]),
                                 cookie=session_cookie(owner), rows=30, cols=100,
                                 send=[b"ls\r", {"resize": [40, 120]}, b"x"])
    assert received == b"echo:ls\recho:x"
    assert code == 1000
    (started,) = shell.started
    assert started["user"] == "990:990"  # the container's own user, never root
    assert started["env"]["PGDATABASE"] == "appl_acme_7" and "PGPASSWORD" not in started["env"]
    assert started["pty"].sizes == [(30, 100), (40, 120)]
    eventually(lambda: ended(db))  # the server closes it once the page left
    assert started["pty"].closed
    with db.transaction() as conn:
        (event,) = conn.execute("SELECT * FROM events WHERE kind = 'shell'").fetchall()
    assert event["build_id"] == build["id"] and event["data"]["seconds"] is not None
    assert "from the browser" in event["message"] and event["data"]["cast"] is False


def test_a_production_terminal_is_recorded_and_the_recording_is_downloadable(
        shell, client_as, make_build, db, config):
    build = make_build("main", state="running", database="appl_acme_main")
    owner = client_as("owner")
    converse(shell.url, ticket=ticket_for(owner, build["id"]), cookie=session_cookie(owner),
             send=[b"select 1;\r"])
    eventually(lambda: ended(db))
    with db.transaction() as conn:
        (session,) = conn.execute("SELECT * FROM shell_sessions").fetchall()
    assert session["recorded"]
    lines = cast.path(config, session["id"]).read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any(json.loads(line)[1:] == ["o", "echo:select 1;\r"] for line in lines[1:])
    page = owner.get(f"/builds/{build['id']}/shell/{session['id']}.cast")
    assert page.status_code == 200 and b'"version": 2' in page.data
    history = owner.get("/projects/acme/branches/main").get_data(as_text=True)
    assert f"/builds/{build['id']}/shell/{session['id']}.cast" in history  # its link
    # A developer may not open a shell on production, nor read its recordings.
    member = client_as("member")
    assert member.get(f"/builds/{build['id']}/shell/{session['id']}.cast").status_code == 403


def test_a_forged_ticket_is_refused(shell, client_as, make_build):
    make_build("feature", state="running")
    owner = client_as("owner")
    refused(shell, ticket="A" * 43, cookie=session_cookie(owner))


def test_an_expired_ticket_is_refused(shell, client_as, make_build, db):
    build = make_build("feature", state="running")
    owner = client_as("owner")
    ticket = ticket_for(owner, build["id"])
    with db.transaction() as conn:
        conn.execute("UPDATE shell_tickets SET expires_at = now() - interval '1 second'")
    refused(shell, ticket=ticket, cookie=session_cookie(owner))


def test_a_ticket_is_used_once(shell, client_as, make_build):
    build = make_build("feature", state="running")
    owner = client_as("owner")
    ticket, cookie = ticket_for(owner, build["id"]), session_cookie(owner)
    assert converse(shell.url, ticket=ticket, cookie=cookie, send=[b"x"])[0] == b"echo:x"
    assert len(shell.started) == 1
    shell.started.clear()
    refused(shell, ticket=ticket, cookie=cookie)


def test_a_foreign_or_missing_origin_is_refused_before_the_upgrade(shell, client_as,
                                                                   make_build):
    build = make_build("feature", state="running")
    owner = client_as("owner")
    for origin in ("http://evil.example", "http://127.0.0.1:8081", None):
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            converse(shell.url, ticket=ticket_for(owner, build["id"]),
                     cookie=session_cookie(owner), origin=origin)
    assert shell.started == []


def test_without_the_session_cookie_or_with_another_s_ticket_nothing_starts(
        shell, client_as, make_build):
    build = make_build("feature", state="running")
    owner, outsider = client_as("owner"), client_as("outsider")
    refused(shell, ticket=ticket_for(owner, build["id"]), cookie=None)
    refused(shell, ticket=ticket_for(owner, build["id"]), cookie=session_cookie(outsider))


def test_a_user_without_the_right_gets_no_terminal(shell, client_as, make_build, db, people):
    production = make_build("main", state="running")
    member = client_as("member")  # a developer: no shell on production by default
    response = member.post(f"/builds/{production['id']}/shell/ticket",
                           headers={"X-CSRF-Token": csrf(member)})
    assert response.status_code == 403
    # A ticket the member got before losing the right (made here in the store): the
    # server asks the policy again.
    with db.transaction() as conn:
        ticket = shell_store.create_ticket(conn, people["member"]["id"], production["id"])
    reason = refused(shell, ticket=ticket, cookie=session_cookie(member))
    assert "does not allow" in reason
    # An outsider's ticket for a project that is not theirs: the project stays hidden.
    with db.transaction() as conn:
        ticket = shell_store.create_ticket(conn, people["outsider"]["id"], production["id"])
    assert refused(shell, ticket=ticket, cookie=session_cookie(client_as("outsider"))) == \
        "refused"


def test_a_build_that_is_not_running_gets_no_terminal(shell, client_as, make_build, db,
                                                      people):
    build = make_build("feature", state="stopped")
    owner = client_as("owner")
    assert owner.post(f"/builds/{build['id']}/shell/ticket",
                      headers={"X-CSRF-Token": csrf(owner)}).status_code == 409
    with db.transaction() as conn:
        ticket = shell_store.create_ticket(conn, people["owner"]["id"], build["id"])
    assert "stopped" in refused(shell, ticket=ticket, cookie=session_cookie(owner))


def test_signing_out_voids_the_cookie_the_server_reads(shell, client_as, make_build, db,
                                                       people):
    build = make_build("feature", state="running")
    owner = client_as("owner")
    ticket, cookie = ticket_for(owner, build["id"]), session_cookie(owner)
    with db.transaction() as conn:
        store_users.end_sessions(conn, people["owner"]["id"])
    refused(shell, ticket=ticket, cookie=cookie)


def test_an_idle_terminal_gets_a_notice_and_is_closed(shell, client_as, make_build, config):
    config.shell.idle_minutes = 0.01  # 0.6 s without a keystroke or output
    build = make_build("feature", state="running")
    owner = client_as("owner")
    received, code, reason = converse(shell.url, ticket=ticket_for(owner, build["id"]),
                                      cookie=session_cookie(owner), hang_up=False)
    assert b"without activity" in received
    assert (code, reason) == (1000, "closed: idle")
    eventually(lambda: shell.started[0]["pty"].closed)
