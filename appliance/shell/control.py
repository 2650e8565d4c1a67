"""How odoo-update and odoo-restart, run in a build's terminal, ask the daemon to act.

Each build with a server has a folder of the daemon's, `builds/<id>/control/`, holding
one unix socket, `control.sock`, served by the daemon; the folder is mounted read-only
at /run/appliance in that build's server container and in no other. So the daemon knows
the build by the socket a request arrives on, whatever the request says; the container
can neither replace the socket nor plant a link beside it (read-only), nor reach
another build's socket (not mounted). The folder is made before the server container
starts; the socket is bound by the daemon (again after a restart of the daemon: the
folder's mount then shows the new one).

A socket holds at most MAX_CONNECTIONS connections at once (more are closed as they
come: a build's code flooding it keeps no more of the daemon's descriptors). A request
is one line of JSON, at most MAX_REQUEST_BYTES, sent within REQUEST_SECONDS:
{"action": "update" | "restart", "modules": [...], "token": "<the terminal's token>"}.
The token is the one the terminal was given (sessions.CONTROL_TOKEN_NAME): it names an
open terminal of this build, whose user must still have the right (shell.actions).
Answers are lines of JSON, {"message": ...} or {"error": ...}, then the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from appliance import layout
from appliance.errors import UserError
from appliance.runtime import buildfs
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 4096
REQUEST_SECONDS = 10
# Connections a build's socket holds at once; more are closed as they come (a build's
# code flooding its socket must not take the daemon's descriptors).
MAX_CONNECTIONS = 4
# What an answer may hold unsent (a client that does not read): past it, the connection
# is cut, and the rest of an update's output goes to update.log only.
MAX_PENDING_BYTES = 1 << 20
# How often the sockets are matched with the builds that have a server (and at once
# when a server starts: Service.nudge).
SYNC_SECONDS = 5
ACTIONS = ("update", "restart")
# An Odoo module's technical name (its folder's name).
MODULE = re.compile(r"^[A-Za-z0-9_]{1,100}$")
MAX_MODULES = 50


class BadRequest(UserError):
    """A request that is not one this socket answers."""


@dataclass(frozen=True)
class Request:
    action: str
    modules: tuple[str, ...]
    token: str


def parse_request(line: bytes) -> Request:
    """The request a line holds, or BadRequest saying what is wrong with it."""
    if len(line) > MAX_REQUEST_BYTES:
        raise BadRequest(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("a request is one line of JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("a request is a JSON object")
    action, token, modules = data.get("action"), data.get("token"), data.get("modules", [])
    if action not in ACTIONS:
        raise BadRequest(f"unknown action: one of {', '.join(ACTIONS)}")
    if not isinstance(token, str) or not token or len(token) > 200:
        raise BadRequest("no terminal token: run this in a terminal the appliance opened")
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise BadRequest("modules are a list of names")
    if action == "update":
        if not modules:
            raise BadRequest("name the modules to update")
        if len(modules) > MAX_MODULES:
            raise BadRequest(f"at most {MAX_MODULES} modules at once")
        bad = [m for m in modules if not MODULE.match(m)]
        if bad:
            raise BadRequest(f"not a module name: {bad[0][:100]!r}")
    elif modules:
        raise BadRequest("a restart takes no modules")
    return Request(action, tuple(dict.fromkeys(modules)), token)


def folder(cfg, build_id: int) -> Path:
    return layout.build_dir(cfg, build_id) / "control"


def prepare(svc, build_id: int) -> Path:
    """The build's control folder (made before its server container mounts it): the
    container's user may enter it, nobody else; the daemon alone writes it."""
    path = folder(svc.config, build_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    buildfs.make_folder(path, svc.config.runtime.uid, 0o700)
    return path


def bind(svc, build_id: int) -> socket.socket:
    """A listening socket at the build's control.sock, owned by the container's user
    (mode 0600); what was there before (a socket of the daemon's previous run) goes."""
    path = prepare(svc, build_id) / SOCKET_NAME
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise buildfs.UnsafePath(f"{path}: not a socket; refused")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        if os.geteuid() == 0:
            os.chown(path, svc.config.runtime.uid, svc.config.runtime.uid,
                     follow_symlinks=False)
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ControlSockets:
    """The daemon's side: one unix server per build with a server, answering requests
    with shell.actions in worker threads."""

    def __init__(self, svc, perform):
        self.svc = svc
        self.perform = perform  # perform(svc, build_id, request, say) in a thread
        self.servers: dict[int, asyncio.AbstractServer] = {}
        self.connections: dict[int, int] = {}  # build id: connections it holds now
        self.flooded: set[int] = set()  # builds whose refusals were logged (once a flood)

    async def sync(self) -> None:
        """Serve exactly the builds that have (or are starting) a server."""
        loop = asyncio.get_running_loop()
        wanted = await loop.run_in_executor(None, self._wanted)
        for build_id in sorted(set(self.servers) - wanted):
            await self._close(build_id)
        for build_id in sorted(wanted - set(self.servers)):
            try:
                sock = await loop.run_in_executor(None, bind, self.svc, build_id)
                self.servers[build_id] = await asyncio.start_unix_server(
                    lambda r, w, b=build_id: self._handle(b, r, w), sock=sock,
                    limit=MAX_REQUEST_BYTES + 1)
            except (OSError, buildfs.UnsafePath) as exc:
                log.warning("build #%s: its control socket could not be made: %s",
                            build_id, exc)

    def _wanted(self) -> set[int]:
        with self.svc.db.transaction() as conn:
            return builds_store.ids_with_server(conn)

    async def _close(self, build_id: int) -> None:
        server = self.servers.pop(build_id)
        server.close()
        await server.wait_closed()
        try:
            os.unlink(folder(self.svc.config, build_id) / SOCKET_NAME)
        except FileNotFoundError:
            pass

    async def close(self) -> None:
        for build_id in list(self.servers):
            await self._close(build_id)

    async def _handle(self, build_id: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        held = self.connections.get(build_id, 0)
        if held >= MAX_CONNECTIONS:
            if build_id not in self.flooded:
                self.flooded.add(build_id)
                log.warning("build #%s: more than %d connections to its control socket at "
                            "once; the others are refused", build_id, MAX_CONNECTIONS)
            writer.transport.abort()  # no answer: a flood gets nothing to wait for
            return
        self.connections[build_id] = held + 1
        try:
            await self._answer(build_id, reader, writer)
        finally:
            self.connections[build_id] -= 1
            if not self.connections[build_id]:
                self.flooded.discard(build_id)

    async def _answer(self, build_id: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()

        def say(message: str, error: bool = False) -> None:  # from any thread
            line = json.dumps({"error" if error else "message": message}).encode() + b"\n"
            loop.call_soon_threadsafe(_write, writer, line)

        try:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_SECONDS)
            except (ValueError, asyncio.LimitOverrunError):
                raise BadRequest(f"a request is at most {MAX_REQUEST_BYTES} bytes") from None
            except asyncio.TimeoutError:
                raise BadRequest(f"no request within {REQUEST_SECONDS} s") from None
            request = parse_request(line.strip())
            await loop.run_in_executor(None, self.perform, self.svc, build_id, request, say)
        except UserError as exc:
            log.info("build #%s: control request refused: %s", build_id, exc)
            say(str(exc), error=True)
        except Exception:  # one bad request must not take the control socket down
            log.exception("build #%s: control request failed", build_id)
            say("the appliance failed to do this (see its log)", error=True)
        finally:
            await asyncio.sleep(0)  # the answers queued by say() go out first
            try:
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


def _write(writer: asyncio.StreamWriter, line: bytes) -> None:
    if writer.is_closing():
        return
    if writer.transport.get_write_buffer_size() + len(line) > MAX_PENDING_BYTES:
        log.warning("a control socket's client does not read its answers: cut off (the "
                    "rest of the output is in the build's logs)")
        writer.transport.abort()
        return
    writer.write(line)
