"""A build's shell over SSH: the browser shell's terminal (appliance.shell.sessions: the
same checks, environment, history line and production recording), bridged to the SSH
session's own terminal.

The SSH client must ask for a terminal (`ssh -t`): this process's stdin is then the pty
sshd made, put in raw mode so that every keystroke (Ctrl-C included) reaches the build's
shell as it was typed; its size follows the client's window (SIGWINCH). The terminal ends
when its shell exits, when the client goes (end of input, or SIGHUP), after
[shell] idle_minutes without a keystroke or output, or once its user is disabled or no
longer allowed the shell (sessions.revoked); its processes end with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import termios
import time
import tty
from collections.abc import Mapping
from typing import TextIO

from appliance import policy
from appliance.config import Config
from appliance.errors import NotFound, UserError
from appliance.services import Services
from appliance.shell import sessions
from appliance.ssh import address
from appliance.ssh.request import ShellRequest
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store.db import Database

log = logging.getLogger(__name__)

CHUNK = 65536
STDIN, STDOUT = 0, 1
DEFAULT_SIZE = (24, 80)
# What sshd sends the forced command when the client goes (and systemd when it stops).
ENDING_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class Hangup(Exception):
    """The SSH session ended under us (SIGHUP or SIGTERM)."""


def serve(cfg: Config, db: Database, user: dict, request: ShellRequest,
          environ: Mapping[str, str], err: TextIO) -> int:
    """Open the build's terminal for `user` and carry it until it ends; exit status 0.
    UserError (nothing started) when the user may not, or the build has no server."""
    if request.command:
        raise UserError(f"only an interactive shell is served on a build: "
                        f"`ssh -t {address.destination(cfg)} {request.target()}`, then type "
                        "the command")
    if not os.isatty(STDIN):
        raise UserError(f"a shell needs a terminal: `ssh -t {address.destination(cfg)} "
                        f"{request.target()}`")
    svc = Services(cfg, db)
    with db.transaction() as conn:
        build_id = _build_id(conn, user, request)
    with _raw_terminal(), _hangups_noted() as noted:  # keys typed meanwhile are kept
        terminal = _open(svc, user, build_id)
        try:
            with _signals(terminal):
                if noted:  # the client went while the terminal opened
                    raise Hangup()
                _pump(terminal, cfg.shell.idle_minutes * 60,
                      lambda: sessions.revoked(svc, terminal))
        except Hangup:
            log.info("shell #%s: the SSH session ended", terminal.session["id"])
        finally:
            sessions.close_terminal(svc, terminal)  # hang-ups are noted again meanwhile
    return 0


def _open(svc: Services, user: dict, build_id: int) -> sessions.Terminal:
    rows, cols = _size()
    try:
        return sessions.open_terminal(svc, user, build_id, rows, cols, "ssh")
    except NotFound:  # its words may name the build's project: say only what was asked
        raise NotFound(f"no build-{build_id} (or you may not see it)") from None


def _build_id(conn, user: dict, request: ShellRequest) -> int:
    """The build asked for: by id, or the latest running build of project/branch (which
    those who may not see the project cannot tell from one that does not exist)."""
    if request.build_id:
        return request.build_id
    hidden = NotFound(f"no branch {request.target()} (or you may not see it)")
    try:
        project = projects_store.get_project(conn, request.project)
    except NotFound:
        raise hidden from None
    if not policy.allows(conn, user, project, "view"):
        raise hidden
    try:
        branch = projects_store.get_branch(conn, project, request.branch)
    except NotFound:
        raise hidden from None
    build = builds_store.latest_build(conn, branch["id"], states=("running",))
    if build is None:
        raise sessions.NotRunning(f"{request.target()} has no running build: start one "
                                  "from the branch's page")
    return build["id"]


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(STDIN)
    except OSError:
        return DEFAULT_SIZE
    return (size.lines or DEFAULT_SIZE[0], size.columns or DEFAULT_SIZE[1])


@contextlib.contextmanager
def _raw_terminal():
    """The SSH side's pty in raw mode, given back as it was."""
    saved = termios.tcgetattr(STDIN)
    tty.setraw(STDIN, termios.TCSANOW)  # not TCSAFLUSH: what was typed already counts
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(STDIN, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _hangups_noted():
    """While the terminal opens and closes, a hang-up (sshd's when the client goes) is
    noted, not acted on: ending this process then would leave the shell running in the
    container, its session and control token open. Yields the list of those noted."""
    noted: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: noted.append(signum))
                for sig in ENDING_SIGNALS}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals(terminal: sessions.Terminal):
    """Window size changes resize the build's terminal; a hang-up ends it."""
    def resize(_signum, _frame):
        rows, cols = _size()
        with contextlib.suppress(UserError, ValueError):
            terminal.pty.resize(rows, cols)
            if terminal.recorder is not None:
                terminal.recorder.resize(rows, cols)

    def hangup(_signum, _frame):
        raise Hangup()

    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGWINCH, resize), (signal.SIGHUP, hangup), (signal.SIGTERM, hangup))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pump(terminal: sessions.Terminal, idle_seconds: float, revoked=lambda: None) -> None:
    """Keystrokes to the build, what it prints to the client, until either side ends,
    the terminal idles, or revoked() gives a reason (asked every
    sessions.RECHECK_SECONDS: the user disabled, or no longer allowed the shell)."""
    selector = selectors.DefaultSelector()
    selector.register(STDIN, selectors.EVENT_READ, "client")
    selector.register(terminal.pty, selectors.EVENT_READ, "build")
    last = checked = time.monotonic()
    try:
        while True:
            idles = idle_seconds > 0  # 0: never closed for idling (as in the browser)
            wait = min(idle_seconds if idles else 60.0, 60.0, sessions.RECHECK_SECONDS)
            events = selector.select(timeout=max(0.05, wait))
            now = time.monotonic()
            if idles and not events and now - last > idle_seconds:
                _write(f"\r\n[closed after {idle_seconds / 60:g} minutes without activity]\r\n")
                return
            if now - checked >= sessions.RECHECK_SECONDS:
                checked, reason = now, _ask(revoked, terminal)
                if reason:
                    log.info("shell #%s closed: %s", terminal.session["id"], reason)
                    _write(f"\r\n[closed: {reason}]\r\n")
                    return
            for item, _mask in events:
                last = time.monotonic()
                if item.data == "client":
                    data = _read(STDIN)
                    if not data:
                        return
                    terminal.pty.send(data)
                else:
                    data = terminal.pty.recv(CHUNK)
                    if not data:
                        return
                    _write(data)
                    if terminal.recorder is not None:
                        terminal.recorder.output(data)
    finally:
        selector.close()


def _ask(revoked, terminal: sessions.Terminal) -> str | None:
    """revoked(), or None while the store cannot say (asked again next round)."""
    try:
        return revoked()
    except Exception:  # a terminal is not cut for a moment's outage of the store
        log.warning("shell #%s: its access could not be checked", terminal.session["id"],
                    exc_info=True)
        return None


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError:  # EIO: the client's pty is gone
        return b""


def _write(data: bytes | str) -> None:
    view = memoryview(data.encode() if isinstance(data, str) else data)
    while view:
        written = os.write(STDOUT, view)
        view = view[written:]
