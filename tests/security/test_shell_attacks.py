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
import time

import pytest

from appliance.errors import NotFound
from appliance.services import Services
from appliance.shell import actions, control, sessions
from appliance.shell import websocket as shell_websocket
from appliance.ssh import shell as ssh_shell
from appliance.store import members as store_members
from appliance.store import shell as shell_store
from appliance.store import users as store_users
from tests.integration.test_shell_refusals import (  # noqa: F401 (the fixture)
    EchoPty, converse, session_cookie, shell, ticket_for)

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
    assert held <= control.MAX_CONNECTIONS + 2, held
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
