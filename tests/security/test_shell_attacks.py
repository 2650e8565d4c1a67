"""The build shell attacked: by the build's own code through its control socket, and by
people who lost their access while a terminal was open.

- A build's code may flood its control socket with connections that say nothing: the
  daemon holds only a few per build at a time (the others are closed at once), so it
  keeps descriptors for its web server, its database and the other builds.
- A user disabled, or no longer allowed a shell on the build's stage, while a terminal
  is open: the daemon no longer acts on that terminal's requests, and the terminal
  itself is closed within seconds (browser and SSH alike); so is a browser's terminal
  once its sign-in is ended (signing out everywhere, a new password).

The WebSocket server is the real one in this process, in front of the real session code
and store; only the container's side is a stand-in (tests/integration/
test_shell_refusals.py's echo).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import types

import pytest

from appliance.errors import NotFound, UserError
from appliance.services import Services
from appliance.shell import actions, control, sessions
from appliance.ssh import shell as ssh_shell
from appliance.ssh.request import ShellRequest
from appliance.store import members as store_members
from appliance.store import shell as shell_store
from appliance.store import users as store_users
from tests.integration.test_shell_refusals import (  # noqa: F401 (the fixture)
    converse, ended, eventually, session_cookie, shell, ticket_for)

TOKEN = "control-token-of-an-open-terminal-0123456789ab"


# -- the control socket ------------------------------------------------------------------

def test_a_build_flooding_its_control_socket_holds_only_a_few_of_the_daemon_s_descriptors(
        config, db, make_build):
    build = make_build("feature", state="running")
    flood = 60

    async def attack() -> tuple[int, int]:
        sockets = control.ControlSockets(Services(config, db), lambda *args: None)
        await sockets.sync()
        path = str(control.folder(config, build["id"]) / control.SOCKET_NAME)
        before = len(os.listdir("/proc/self/fd"))
        clients = []
        try:
            for _ in range(flood):  # each says nothing, and waits
                clients.append(await asyncio.open_unix_connection(path))
            await asyncio.sleep(0.5)
            held = len(os.listdir("/proc/self/fd")) - before - flood  # ours are `flood`
            dropped = 0
            for reader, _writer in clients:
                try:
                    if await asyncio.wait_for(reader.read(), 0.05) is not None:
                        dropped += 1  # the daemon's side is closed: end of stream
                except asyncio.TimeoutError:
                    pass
            return held, dropped
        finally:
            for _reader, writer in clients:
                writer.close()
            await sockets.close()

    held, dropped = asyncio.run(attack())
    assert held <= control.MAX_CONNECTIONS + 6, held  # (+ the pool's connections, if any)
    assert dropped >= flood - control.MAX_CONNECTIONS


def _open_session(db, build: dict, user: dict) -> None:
    with db.transaction() as conn:
        shell_store.start_session(conn, build, user, "browser", TOKEN, recorded=False)


def test_a_disabled_user_s_open_terminal_can_no_longer_make_the_daemon_act(
        config, db, people, make_build):
    build = make_build("feature", state="running")
    svc = Services(config, db)
    _open_session(db, build, people["owner"])  # the project's admin
    actions.authorise(svc, build["id"], TOKEN)  # allowed while the account is enabled
    with db.transaction() as conn:
        store_users.set_disabled(conn, "owner", True)
    with pytest.raises(NotFound):
        actions.authorise(svc, build["id"], TOKEN)


def test_a_disabled_appliance_admin_s_open_terminal_can_no_longer_make_the_daemon_act(
        config, db, people, make_build):
    build = make_build("main", state="running")
    with db.transaction() as conn:
        store_users.create_user(conn, "second", "correct horse", is_admin=True)
    _open_session(db, build, people["admin"])
    with db.transaction() as conn:
        store_users.set_disabled(conn, "admin", True)
    with pytest.raises(NotFound):
        actions.authorise(Services(config, db), build["id"], TOKEN)


def test_a_terminal_of_an_archived_project_cannot_restart_or_update_its_server(
        config, db, people, make_build):
    """Archiving stops the project's servers (a task): a terminal still open meanwhile
    must not start one again behind it."""
    build = make_build("feature", state="running")
    _open_session(db, build, people["owner"])
    with db.transaction() as conn:
        conn.execute("UPDATE projects SET archived_at = now() WHERE id = %s",
                     (build["project_id"],))
    with pytest.raises(UserError, match="archived"):
        actions.authorise(Services(config, db), build["id"], TOKEN)


# -- open terminals whose access goes -----------------------------------------------------

def _disable(db, people):
    with db.transaction() as conn:
        store_users.set_disabled(conn, "member", True)


def _remove_from_project(db, people):
    with db.transaction() as conn:
        store_members.remove(conn, people["project"], "member")


def _sign_out_everywhere(db, people):
    with db.transaction() as conn:
        store_users.end_sessions(conn, people["member"]["id"])


@pytest.mark.parametrize("revoke, notice", [
    (_disable, "the account is disabled"),
    (_remove_from_project, "a shell on this build is no longer allowed"),
    (_sign_out_everywhere, "the sign-in that opened it has ended"),
])
def test_an_open_browser_terminal_closes_once_its_user_s_access_goes(
        shell, client_as, make_build, db, people, monkeypatch, revoke, notice):
    monkeypatch.setattr(sessions, "RECHECK_SECONDS", 0.2)
    build = make_build("feature", state="running")
    member = client_as("member")  # a developer: a shell on development
    timer = threading.Timer(0.6, revoke, (db, people))
    timer.start()
    try:
        received, code, reason = converse(shell.url, ticket=ticket_for(member, build["id"]),
                                          cookie=session_cookie(member), send=[b"id\r"],
                                          hang_up=False)
    finally:
        timer.join()
    assert received.startswith(b"echo:id\r")
    assert f"[closed: {notice}".encode() in received
    assert (code, reason) == (1000, "closed: access revoked")
    (started,) = shell.started
    eventually(lambda: started["pty"].closed and ended(db))


@pytest.mark.parametrize("revoke, notice", [
    (_disable, "the account is disabled"),
    (_remove_from_project, "a shell on this build is no longer allowed"),
])
def test_an_open_ssh_terminal_closes_once_its_user_s_access_goes(
        config, db, people, make_build, monkeypatch, revoke, notice):
    """ssh.shell's loop between the SSH session's pty (here: pipes) and the build's
    terminal (here: a socket pair), with the real check against the store."""
    monkeypatch.setattr(sessions, "RECHECK_SECONDS", 0.2)
    build = make_build("feature", state="running")
    svc = Services(config, db)
    with db.transaction() as conn:
        session = shell_store.start_session(conn, build, people["member"], "ssh", TOKEN,
                                            recorded=False)
    ours, theirs = socket.socketpair()
    terminal = sessions.Terminal(ours, session, build, people["project"], people["member"],
                                 TOKEN)
    client_in, keys = os.pipe()
    screen, client_out = os.pipe()
    monkeypatch.setattr(ssh_shell, "STDIN", client_in)
    monkeypatch.setattr(ssh_shell, "STDOUT", client_out)
    pump = threading.Thread(target=ssh_shell._pump, daemon=True, args=(
        terminal, 1800, lambda: sessions.revoked(svc, terminal)))
    pump.start()
    try:
        os.write(keys, b"id\r")
        assert theirs.recv(100) == b"id\r"  # the terminal carries keystrokes meanwhile
        revoke(db, people)
        pump.join(5)
        assert not pump.is_alive(), "the terminal stayed open"
        assert f"[closed: {notice}".encode() in os.read(screen, 4096)
    finally:
        for fd in (client_in, keys, screen, client_out):
            os.close(fd)
        ours.close()
        theirs.close()


class _Died(Exception):
    """Stands for the default action of SIGHUP: the process ends on the spot."""


def test_an_ssh_client_gone_while_its_terminal_opens_leaves_no_shell_behind(
        config, db, people, monkeypatch):
    """sshd hangs up the forced command when the client goes. Arriving while the terminal
    is being opened, the hang-up waits until the terminal can be closed: otherwise the
    shell stays in the container, its session (and control token) open for good."""
    opened, closed = [], []
    terminal = types.SimpleNamespace(session={"id": 1})

    def open_and_hang_up(svc, user, build_id):
        opened.append(build_id)  # its shell runs in the container from here on
        os.kill(os.getpid(), signal.SIGHUP)  # the client goes before it is all set up
        return terminal

    def died(_signum, _frame):
        raise _Died()

    primary, replica = os.openpty()  # the SSH session's pty, as sshd makes it
    monkeypatch.setattr(ssh_shell, "STDIN", replica)
    monkeypatch.setattr(ssh_shell, "_open", open_and_hang_up)
    monkeypatch.setattr(ssh_shell, "_pump", lambda *args: time.sleep(5))
    monkeypatch.setattr(sessions, "close_terminal", lambda svc, t: closed.append(t))
    previous = signal.signal(signal.SIGHUP, died)
    try:
        ssh_shell.serve(config, db, people["member"], ShellRequest(build_id=7), {}, None)
    except _Died:
        pass
    finally:
        signal.signal(signal.SIGHUP, previous)
        os.close(primary)
        os.close(replica)
    assert opened == [7] and closed == [terminal]
