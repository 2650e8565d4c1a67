"""The shell's asyncio services in a thread of the daemon: the WebSocket server of the
browser's terminals and the builds' control sockets, on one event loop.

    shell = ShellService(svc); shell.start()   # before the proxy's routes are loaded
    ...
    shell.stop()                               # open terminals are closed

start() binds the WebSocket server ([shell] listen; port 0 picks a free one) and writes
the address it got back into the config, where the pages and the proxy's routes read it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from appliance.errors import ConfigError
from appliance.shell import actions, cast, control, sessions
from appliance.shell.websocket import TerminalServer

log = logging.getLogger(__name__)

START_SECONDS = 15
STOP_SECONDS = 20
# Old recordings are looked for this often (seconds).
PRUNE_SECONDS = 3600


class ShellService:
    def __init__(self, svc, open_terminal=sessions.open_terminal):
        self.svc = svc
        self.terminals = TerminalServer(svc, open_terminal=open_terminal)
        self.controls = control.ControlSockets(svc, actions.perform)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._nudged: asyncio.Event | None = None

    def start(self) -> "ShellService":
        ended = sessions.end_abandoned(self.svc)
        if ended:
            log.info("ended %d terminal sessions the previous run left open", ended)
        self.thread = threading.Thread(target=self._run, name="shell", daemon=True)
        self.thread.start()
        if not self._ready.wait(START_SECONDS):
            raise ConfigError("the shell's WebSocket server did not start")
        if self._failure is not None:
            raise ConfigError(f"the shell's WebSocket server cannot listen on "
                              f"{self.svc.config.shell.listen}: {self._failure}")
        self.svc.extra["shell_nudge"] = self.nudge
        return self

    def nudge(self) -> None:
        """A server is starting: make its control socket now (from any thread)."""
        if self.loop is not None and self._nudged is not None:
            self.loop.call_soon_threadsafe(self._nudged.set)

    def stop(self) -> None:
        self.svc.extra.pop("shell_nudge", None)
        if self.loop is None or self._stopping is None or not self.thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._stopping.set)
        self.thread.join(STOP_SECONDS)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(), or logged once running
            if not self._ready.is_set():
                self._failure = exc
                self._ready.set()
            else:
                log.exception("the shell's services stopped")
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stopping, self._nudged = asyncio.Event(), asyncio.Event()
        host, _, port = self.svc.config.shell.listen.rpartition(":")
        bound = await self.terminals.start(host.strip("[]"), int(port))
        self.svc.config.shell.listen = f"{host}:{bound}"
        self._ready.set()
        periodic = asyncio.ensure_future(self._periodic())
        await self._stopping.wait()
        periodic.cancel()
        await asyncio.gather(periodic, return_exceptions=True)
        await self.terminals.stop()
        await self.controls.close()

    async def _periodic(self) -> None:
        loop = asyncio.get_running_loop()
        since_prune = PRUNE_SECONDS
        while True:
            try:
                await self.controls.sync()
                if since_prune >= PRUNE_SECONDS:
                    since_prune = 0
                    await loop.run_in_executor(None, cast.prune, self.svc)
            except Exception:  # the next round tries again
                log.exception("the shell's periodic work failed; it runs again later")
            try:
                await asyncio.wait_for(self._nudged.wait(), control.SYNC_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._nudged.clear()
            since_prune += control.SYNC_SECONDS
