"""systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram of
`KEY=value` lines to the socket named in NOTIFY_SOCKET.

The unit is `Type=notify`: systemd counts the appliance as started when READY=1 arrives
(after the state database answered, its migrations ran, reconcile finished and the web
server is bound), and with `WatchdogSec=` it restarts a daemon whose web server's loop
stops sending WATCHDOG=1. Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)

# WATCHDOG=1 is sent this many times per watchdog interval: a late loop turn or two does
# not get the daemon killed (systemd's own advice is at least twice).
PINGS_PER_INTERVAL = 4


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send `message` (lines of KEY=value) to systemd. False when not run by systemd, or
    when the socket cannot be reached (logged: the daemon carries on)."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is neither a path nor abstract: not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", message.split("\n", 1)[0], exc)
        return False
    return True


def watchdog_seconds(env: dict[str, str] | None = None) -> float | None:
    """The watchdog interval systemd asks of this process, or None when there is none
    (no WatchdogSec=, or WATCHDOG_PID names another process)."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


class Watchdog:
    """Sends WATCHDOG=1 when beat() is called, at most PINGS_PER_INTERVAL times per
    interval. Call beat() from the loop whose turning proves the daemon alive."""

    def __init__(self, interval: float, env: dict[str, str] | None = None):
        self.period = interval / PINGS_PER_INTERVAL
        self.env = env
        self.last = float("-inf")

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.period:
            self.last = now
            notify("WATCHDOG=1", self.env)


def feed_from_server(server, env: dict[str, str] | None = None) -> Watchdog | None:
    """Feed the watchdog from waitress's main loop: the loop asks its listening socket
    `readable()` at every turn (at least once a second, idle or busy), so that is where
    the beat goes. A loop that hangs stops the beats, and systemd restarts the daemon.
    None (and nothing changed) when systemd set no watchdog."""
    interval = watchdog_seconds(env)
    if interval is None:
        return None
    watchdog = Watchdog(interval, env)
    listener = _listener(server)
    readable = listener.readable

    def readable_with_beat():
        watchdog.beat()
        return readable()

    listener.readable = readable_with_beat
    log.info("systemd watchdog: %g s, fed from the web server's loop", interval)
    return watchdog


def _listener(server):
    """The listening dispatcher of a waitress server: the server itself, or the first of
    a MultiSocketServer's (a host name with several addresses listens on each)."""
    if isinstance(server, BaseWSGIServer):
        return server
    return next(obj for obj in server.map.values() if isinstance(obj, BaseWSGIServer))
