"""The few lines of sd_notify(3): datagrams to NOTIFY_SOCKET, the watchdog's interval and
its rate, against real Unix datagram sockets."""

from __future__ import annotations

import os
import socket

import pytest

from appliance import systemd_notify


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_to_the_socket_systemd_names(listener, tmp_path):
    assert systemd_notify.notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert listener.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket_named_with_an_at_sign():
    name = f"appliance-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert systemd_notify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""},
                                 {"NOTIFY_SOCKET": "relative/path"},
                                 {"NOTIFY_SOCKET": "/nonexistent/notify"}])
def test_notify_outside_systemd_or_to_a_bad_socket_does_nothing_and_never_raises(env):
    assert systemd_notify.notify("READY=1", env) is False


@pytest.mark.parametrize("env, seconds", [
    ({"WATCHDOG_USEC": "60000000"}, 60.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_the_watchdog_interval_is_read_only_when_meant_for_this_process(env, seconds):
    assert systemd_notify.watchdog_seconds(env) == seconds


def test_the_watchdog_pings_at_most_four_times_an_interval_however_often_it_beats(
        listener, tmp_path):
    watchdog = systemd_notify.Watchdog(60, {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    for _ in range(100):
        watchdog.beat()
    assert listener.recv(4096) == b"WATCHDOG=1"
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.recv(4096)
