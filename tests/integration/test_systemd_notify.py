"""The daemon as systemd runs it (Type=notify, WatchdogSec=): READY=1 only once it serves,
WATCHDOG=1 from its web server's loop, STOPPING=1 at SIGTERM. It runs with writable memory
never made executable (the prctl behind the unit's MemoryDenyWriteExecute=yes), which
shows Python and its libraries live with that hardening."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.integration.harness import ROOT, Appliance

pytestmark = pytest.mark.docker

# PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+), kept across execve.
WITH_MDWE = ("import ctypes, os, sys\n"
             "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:\n"
             "    sys.exit('prctl(PR_SET_MDWE): ' + os.strerror(ctypes.get_errno()))\n"
             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n")
WATCHDOG_USEC = 2_000_000


def mdwe_supported() -> bool:
    probe = subprocess.run([sys.executable, "-c", WITH_MDWE, "-c", "pass"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def appliance(tmp_path):
    app = Appliance(tmp_path, "notify")
    yield app
    app.close()


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    yield sock
    sock.close()


def start_as_systemd_does(app: Appliance, notify_path: str) -> None:
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": notify_path,
           "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    app.process = subprocess.Popen(
        [sys.executable, "-c", WITH_MDWE, "-m", "appliance.cli", "--config",
         str(app.config_path), "serve"],
        cwd=ROOT, stdout=open(app.log_path, "ab"), stderr=subprocess.STDOUT, env=env)


def receive(sock: socket.socket, app: Appliance, until: bytes, timeout: float) -> list[bytes]:
    """Datagrams received until one holding `until` (the daemon must not have exited)."""
    received = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            received.append(sock.recv(4096))
        except TimeoutError:
            break
        if until in received[-1]:
            return received
    raise AssertionError(f"no {until!r} within {timeout} s (got {received}); daemon log: "
                         f"{app.log_path.read_text()[-2000:]}")


def test_ready_comes_once_the_daemon_serves_and_the_watchdog_is_fed_until_it_stops(
        appliance, notify_socket, tmp_path):
    start_as_systemd_does(appliance, str(tmp_path / "notify"))
    before_ready = receive(notify_socket, appliance, b"READY=1", timeout=60)
    assert not any(b"WATCHDOG=1" in message for message in before_ready[:-1])
    # Ready means bound and answering, with the state database migrated.
    with urllib.request.urlopen(appliance.url + "/-/health", timeout=5) as answer:
        assert answer.status == 200
    assert b"STATUS=serving on http://127.0.0.1:" in before_ready[-1]

    started, pings = time.monotonic(), []
    notify_socket.settimeout(0.2)
    while time.monotonic() - started < 2.5:
        try:
            pings.append(notify_socket.recv(4096))
        except TimeoutError:
            continue
    # Four beats per interval of 2 s: about five in 2.5 s; at least one per second.
    assert pings.count(b"WATCHDOG=1") >= 3, pings

    appliance.process.send_signal(signal.SIGTERM)
    receive(notify_socket, appliance, b"STOPPING=1", timeout=10)
    assert appliance.process.wait(timeout=60) == 0
    appliance.process = None
