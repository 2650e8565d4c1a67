"""The browser's terminal: one WebSocket per terminal, served by an asyncio server in the
daemon (waitress cannot upgrade a connection, and each terminal would hold one of its
threads for as long as it is open).

Before any process starts, a connection must pass, in this order:

1. its Origin is exactly the appliance's public address (a missing one is refused):
   the `websockets` library answers 403 to anything else, before the upgrade;
2. it carries the UI's session cookie, still valid (not signed out, same password);
3. its first message, within FIRST_MESSAGE_SECONDS, is {"ticket", "rows", "cols"}
   with a ticket the signed-in page got from the UI a moment before
   (web/shell.py): it exists, has not expired, was not used, and belongs to the
   cookie's user; it is used up now;
4. shell.sessions.open_terminal: the user may open a shell on the build's stage, and
   the build runs.

A refusal closes the connection with code 4403 and a reason. Then binary frames carry
the terminal's bytes both ways; a text frame {"resize": [rows, cols]} resizes it. A
terminal without a keystroke or output for [shell] idle_minutes gets a notice and is
closed; so is one whose sign-in ended, whose user was disabled or lost the right
(checked every sessions.RECHECK_SECONDS). Runs on websockets 10.4 (Debian 12) and on
the newest: only what both have (`serve` with `origins`, a handler taking the
connection, recv/send/close).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

import websockets
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature

from appliance.errors import ApplianceError, NotFound, UserError
from appliance.shell import sessions
from appliance.store import shell as shell_store
from appliance.store import users as users_store

log = logging.getLogger(__name__)

PATH = "/-/shell/"
FIRST_MESSAGE_SECONDS = 10
# The largest frame a browser may send (a paste).
MAX_MESSAGE_BYTES = 1 << 20
READ_BYTES = 65536
REFUSED = 4403
# The UI's session cookie (web/app.py) and how long a sign-in lasts.
SESSION_COOKIE = "appliance_session"
SESSION_SECONDS = 14 * 24 * 3600
IDLE_NOTICE = "\r\n\x1b[1;33m[closed after {minutes:g} minutes without activity]\x1b[0m\r\n"
REVOKED_NOTICE = "\r\n\x1b[1;31m[closed: {reason}]\x1b[0m\r\n"


class Refusal(Exception):
    """The connection may not have a terminal; the reason is for the person."""


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, as a browser sends it in Origin."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{scheme}://{host}{port}"


def browser_url(cfg) -> str:
    """Where the page opens the WebSocket: the UI's own address behind a proxy (which
    routes PATH here), or this server's loopback port when the UI is on loopback."""
    public = urlsplit(cfg.server.public_url)
    scheme = "wss" if public.scheme == "https" else "ws"
    host = public.hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        port = cfg.shell.listen.rpartition(":")[2]
        return f"{scheme}://{'[::1]' if host == '::1' else host}:{port}{PATH}"
    return f"{scheme}://{public.netloc}{PATH}"


class CookieReader:
    """The user id and session generation a UI session cookie holds (None: no valid
    cookie): read with the web app's own signing key and serializer."""

    def __init__(self, secret_key: str):
        app = Flask("appliance-shell")
        app.secret_key = secret_key
        self.serializer = SecureCookieSessionInterface().get_signing_serializer(app)

    def __call__(self, header: str | None) -> tuple[int, int] | None:
        if not header or self.serializer is None:
            return None
        try:
            morsel = SimpleCookie(header).get(SESSION_COOKIE)
        except CookieError:
            return None
        if morsel is None:
            return None
        try:
            data = self.serializer.loads(morsel.value, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        return data.get("user_id"), data.get("generation")


def _request(ws) -> tuple[str, object]:
    """(path, headers) of the handshake, on either API of the library."""
    request = getattr(ws, "request", None)
    if request is not None and hasattr(request, "headers"):
        return request.path, request.headers
    return ws.path, ws.request_headers


class TerminalServer:
    """The WebSocket server and the terminals it holds open."""

    def __init__(self, svc, open_terminal=sessions.open_terminal,
                 close_terminal=sessions.close_terminal, revoked=sessions.revoked):
        self.svc = svc
        self.open_terminal = open_terminal
        self.close_terminal = close_terminal
        self.revoked = revoked
        self.cookies = CookieReader(svc.config.server.secret_key)
        self.terminals: set = set()
        self.server = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (a free one was picked for 0)."""
        origin = origin_of(self.svc.config.server.public_url)
        self.server = await websockets.serve(
            self.handler, host, port, origins=[origin], max_size=MAX_MESSAGE_BYTES,
            compression=None, ping_interval=20, ping_timeout=20)
        bound = self.server.sockets[0].getsockname()[1]
        log.info("shell WebSocket server on %s:%s (Origin %s)", host, bound, origin)
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        for terminal in list(self.terminals):
            await loop.run_in_executor(None, self.close_terminal, self.svc, terminal)
        if self.server is not None:
            await self.server.wait_closed()

    async def handler(self, ws, path=None) -> None:  # path: websockets 10's second argument
        try:
            terminal, cookie = await self._admit(ws)
        except Refusal as exc:
            await ws.close(REFUSED, str(exc)[:120])
            return
        except websockets.ConnectionClosed:
            return
        try:
            self.terminals.add(terminal)
            reason = await self._pump(ws, terminal, cookie)
        finally:
            self.terminals.discard(terminal)
            await asyncio.get_running_loop().run_in_executor(
                None, self.close_terminal, self.svc, terminal)
        await ws.close(1000, reason)

    async def _admit(self, ws):
        path, headers = _request(ws)
        if not path.startswith(PATH):
            raise Refusal("no such terminal")
        cookie = self.cookies(headers.get("Cookie"))
        if cookie is None:
            raise Refusal("sign in first")
        try:
            first = await asyncio.wait_for(ws.recv(), FIRST_MESSAGE_SECONDS)
        except asyncio.TimeoutError:
            raise Refusal("no ticket") from None
        try:
            hello = json.loads(first) if isinstance(first, str) else None
            ticket, rows, cols = hello["ticket"], hello["rows"], hello["cols"]
        except (ValueError, TypeError, KeyError):
            raise Refusal("no ticket") from None
        loop = asyncio.get_running_loop()
        terminal = await loop.run_in_executor(None, self._open, cookie, ticket, rows, cols)
        return terminal, cookie

    def _open(self, cookie: tuple[int, int], ticket, rows, cols):
        """In a worker thread: the ticket, then the terminal (or a Refusal)."""
        if not isinstance(ticket, str):
            raise Refusal("refused")
        with self.svc.db.transaction() as conn:
            user = users_store.session_user(conn, *cookie)
            used = shell_store.use_ticket(conn, ticket)
        if user is None or used is None or used["user_id"] != user["id"]:
            log.info("shell: a ticket was refused (unknown, expired, used or another's)")
            raise Refusal("refused: reload the page to get a new ticket")
        try:
            return self.open_terminal(self.svc, user, used["build_id"], rows, cols,
                                      "browser")
        except NotFound:
            raise Refusal("refused") from None
        except (UserError, ValueError) as exc:
            raise Refusal(str(exc)) from None

    async def _pump(self, ws, terminal, cookie: tuple[int, int]) -> str:
        """Bytes both ways until either side ends, the terminal idles or its access is
        revoked; the reason."""
        terminal.pty.setblocking(False)
        activity = [time.monotonic()]
        tasks = {
            asyncio.ensure_future(self._from_terminal(ws, terminal, activity)): "ended",
            asyncio.ensure_future(self._from_browser(ws, terminal, activity)): "closed",
            asyncio.ensure_future(self._idle(ws, activity)): "idle",
            asyncio.ensure_future(self._watch(ws, terminal, cookie)): "revoked",
        }
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() and not isinstance(task.exception(),
                                                   websockets.ConnectionClosed):
                log.warning("shell #%s: %r", terminal.session["id"], task.exception())
        return {"ended": "the shell ended", "closed": "closed", "idle": "closed: idle",
                "revoked": "closed: access revoked"}[tasks[next(iter(done))]]

    async def _from_terminal(self, ws, terminal, activity) -> None:
        """What the terminal prints, to the browser. The socket stays registered with the
        loop for the whole session (not once per read): a keystroke's echo is one
        wake-up and one read."""
        loop = asyncio.get_running_loop()
        sock, readable = terminal.pty.socket, asyncio.Event()
        loop.add_reader(sock.fileno(), readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = sock.recv(READ_BYTES)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                if not data:
                    return
                activity[0] = time.monotonic()
                if terminal.recorder is not None:
                    terminal.recorder.output(data)
                await ws.send(data)
        finally:
            loop.remove_reader(sock.fileno())

    async def _from_browser(self, ws, terminal, activity) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            activity[0] = time.monotonic()
            if isinstance(message, bytes):
                await loop.sock_sendall(terminal.pty.socket, message)
                continue
            try:
                rows, cols = json.loads(message)["resize"]
                await loop.run_in_executor(None, terminal.pty.resize, rows, cols)
            except (ValueError, TypeError, KeyError, ApplianceError) as exc:
                log.info("shell #%s: ignored a message: %s", terminal.session["id"], exc)
                continue
            if terminal.recorder is not None:
                terminal.recorder.resize(int(rows), int(cols))

    async def _watch(self, ws, terminal, cookie: tuple[int, int]) -> None:
        """Every sessions.RECHECK_SECONDS: the sign-in that opened the terminal still
        holds (not signed out everywhere, no new password, the account enabled) and its
        user may still have it (sessions.revoked); else a notice, and the end."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(sessions.RECHECK_SECONDS)
            try:
                reason = await loop.run_in_executor(None, self._why_revoked, terminal,
                                                    cookie)
            except Exception:  # the store unreachable a moment: asked again next round
                log.warning("shell #%s: its access could not be checked",
                            terminal.session["id"], exc_info=True)
                continue
            if reason:
                log.info("shell #%s closed: %s", terminal.session["id"], reason)
                await ws.send(REVOKED_NOTICE.format(reason=reason).encode())
                return

    def _why_revoked(self, terminal, cookie: tuple[int, int]) -> str | None:
        reason = self.revoked(self.svc, terminal)
        if reason:
            return reason
        with self.svc.db.transaction() as conn:
            if users_store.session_user(conn, *cookie) is None:
                return "the sign-in that opened it has ended"
        return None

    async def _idle(self, ws, activity) -> None:
        limit = self.svc.config.shell.idle_minutes * 60
        if limit <= 0:  # 0: terminals are never closed for idling
            await asyncio.Future()
        while True:
            left = activity[0] + limit - time.monotonic()
            if left <= 0:
                notice = IDLE_NOTICE.format(minutes=self.svc.config.shell.idle_minutes)
                await ws.send(notice.encode())
                return
            await asyncio.sleep(min(left, 30))
