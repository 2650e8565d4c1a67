"""A terminal in a real container (runtime.docker_exec): bytes both ways, the size, and a
close that leaves no process behind (as `docker top` sees it)."""

from __future__ import annotations

import subprocess
import time
import uuid

import docker.errors
import pytest

from appliance.config import RuntimeConfig
from appliance.runtime import docker_exec

pytestmark = pytest.mark.docker

USER = "990:990"


@pytest.fixture(scope="module")
def container(docker_client):
    image = RuntimeConfig().base_image
    try:
        docker_client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"the base image {image} is missing: run `make image`")
    box = docker_client.containers.run(image, ["sleep", "600"], detach=True, init=True,
                                       read_only=True, user=USER, remove=True,
                                       name=f"appliance-exec-test-{uuid.uuid4().hex[:8]}")
    yield box
    box.remove(force=True)


def read_until(session, text: bytes, seconds: float = 10) -> bytes:
    session.socket.settimeout(0.2)
    seen = b""
    deadline = time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline:
        try:
            chunk = session.recv()
        except TimeoutError:
            continue
        if not chunk:
            break
        seen += chunk
    assert text in seen, seen
    return seen


def top(container) -> str:
    return subprocess.run(["docker", "top", container.id], capture_output=True, text=True,
                          check=True).stdout


def test_a_terminal_echoes_keystrokes_and_takes_its_size(container):
    session = docker_exec.open(container.id, USER, ["sh"], {"TERM": "xterm-256color"},
                               rows=30, cols=100)
    try:
        assert session.socket.gettimeout() is None  # an idle shell is never cut
        session.send(b"stty size; echo $TERM\r")
        read_until(session, b"30 100")
        session.resize(41, 132)
        session.send(b"stty size\r")
        read_until(session, b"41 132")
    finally:
        session.close()


def test_the_first_bytes_a_command_prints_reach_the_reader(container):
    session = docker_exec.open(container.id, USER, ["sh", "-c", "echo first-bytes; sleep 2"])
    try:
        read_until(session, b"first-bytes")
    finally:
        session.close()


def test_close_ends_the_shell_and_what_it_started_but_not_another_session(container):
    other = docker_exec.open(container.id, USER, ["sh", "-c", "sleep 901"])
    session = docker_exec.open(container.id, USER, ["sh"])
    try:
        # A job in the background and one that ignores SIGHUP: both must go.
        session.send(b"sleep 902 & trap '' HUP; sleep 903\r")
        deadline = time.monotonic() + 10
        while "sleep 903" not in top(container) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "sleep 902" in top(container)
        assert session.close() >= 3
        listing = top(container)
        assert "sleep 902" not in listing and "sleep 903" not in listing, listing
        assert "sleep 901" in listing  # the other session's process is left alone
        assert not session.running()
        assert session.close() == 0  # twice is fine
    finally:
        other.close()
    assert "sleep 901" not in top(container)


def test_a_terminal_never_runs_as_root_nor_takes_a_silly_size(container):
    for user in ("0", "root", "0:0", ""):
        with pytest.raises(ValueError):
            docker_exec.open(container.id, user, ["sh"])
    with pytest.raises(ValueError):
        docker_exec.open(container.id, USER, ["sh"], rows=0, cols=80)
    with pytest.raises(ValueError):
        docker_exec.check_size(24, 10**6)
