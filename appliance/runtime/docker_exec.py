"""A terminal in a running container: `docker exec` with a TTY, as a plain socket.

    session = docker_exec.open(container_id, "990:990", ["bash", "-i"], {"TERM": ...},
                               rows=24, cols=80)
    session.send(b"ls\\r"); session.recv(65536); session.resize(40, 120); session.close()

No asyncio and no web here: the browser's WebSocket (appliance.shell) and SSH both
bridge this object to their own side (it has fileno(), so a selector or an event loop
can wait on it).

The docker SDK's own way in has traps, each answered here:

- `exec_start(socket=True)` hands back a read-only wrapper, and the HTTP client may have
  read the first bytes of the stream into its buffer with the response's headers. The
  stream is started here by hand on a connection of our own (the engine's unix socket,
  or plain TCP): the request with `Upgrade: tcp`, the headers read up to their blank
  line and not one byte further, and the connection is the terminal both ways.
- The SDK's 60 s socket timeout would cut an idle shell: the socket here has none.
- With a TTY the stream is raw: no multiplexing headers to strip.
- Closing the stream does not end the exec: the shell would wait on its terminal for
  ever. close() ends the processes itself, as the container's own user (never root),
  with a second exec: every process carrying the session's marker in its environment,
  and every process of their sessions (an exec with a TTY is a session leader, and
  what it starts stays in its session unless it leaves it on purpose), get SIGHUP, and
  SIGKILL shortly after if they are still there.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from urllib.parse import urlsplit

import docker.errors

from appliance.errors import DockerError
from appliance.runtime.docker_engine import connect, engine_address, engine_errors

log = logging.getLogger(__name__)

# The environment variable that marks every process of one terminal session.
MARKER_NAME = "APPLIANCE_TERMINAL"
# The engine's answer to the start request: its headers are short.
MAX_HEAD_BYTES = 16 * 1024
# How long the engine may take to answer the start request (seconds).
START_TIMEOUT = 15
# The first resize may come before the engine has started the process: it is tried
# again for this long.
RESIZE_RETRY_SECONDS = 1.0
# Terminal sizes a client may ask for.
MAX_ROWS, MAX_COLS = 500, 1000

# Run by close() in the container as its user, with sh (any image has it): SIGHUP to the
# session's processes, SIGKILL to those still there a moment later; prints how many.
# A process belongs to the session when its environment has the marker or its session
# id is one of those processes' (field 6 of /proc/PID/stat, after the command's ")").
END_SESSION = r"""
marker="%s=$1"
members() {
    sessions=" "; all=""; found=""
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [ "$pid" = "$$" ] && continue
        { read -r stat < "$dir/stat"; } 2>/dev/null || continue
        set -- ${stat##*) }
        [ "$1" = Z ] && continue
        all="$all $pid:$4"
        if grep -qzxF "$marker" "$dir/environ" 2>/dev/null; then
            sessions="$sessions$4 "
        fi
    done
    for entry in $all; do
        case "$sessions" in *" ${entry#*:} "*) found="$found ${entry%%:*}" ;; esac
    done
}
alive() {
    left=""
    for pid in $1; do
        { read -r stat < "/proc/$pid/stat"; } 2>/dev/null || continue
        set -- ${stat##*) }
        [ "$1" = Z ] || left="$left $pid"
    done
}
members
set -- $found
count=$#
if [ -n "$found" ]; then
    kill -s HUP $found 2>/dev/null
    alive "$found"
    tries=0
    while [ -n "$left" ] && [ $tries -lt 20 ]; do
        sleep 0.05
        alive "$left"
        tries=$((tries + 1))
    done
    members
    [ -z "$found" ] || kill -s KILL $found 2>/dev/null
fi
echo "$count"
""" % MARKER_NAME


class PtyExec:
    """One terminal session in a container: the stream (fileno/recv/send), its size,
    and close(), which ends its processes."""

    def __init__(self, client, container_id: str, user: str, exec_id: str,
                 sock: socket.socket, marker: str, owns_client: bool = False):
        self.client = client
        self.owns_client = owns_client  # made for this session: closed with it
        self.container_id = container_id
        self.user = user
        self.exec_id = exec_id
        self.socket = sock
        self.marker = marker
        self.closed = False

    def fileno(self) -> int:
        return self.socket.fileno()

    def recv(self, size: int = 65536) -> bytes:
        """What the terminal printed (b"" once the session has ended)."""
        try:
            return self.socket.recv(size)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def send(self, data: bytes) -> None:
        """Keystrokes (all of them: sendall)."""
        self.socket.sendall(data)

    def setblocking(self, flag: bool) -> None:
        self.socket.setblocking(flag)

    def resize(self, rows: int, cols: int) -> None:
        rows, cols = check_size(rows, cols)
        deadline = time.monotonic() + RESIZE_RETRY_SECONDS
        while True:
            try:
                with engine_errors("resizing a terminal"):
                    self.client.api.exec_resize(self.exec_id, height=rows, width=cols)
                return
            except DockerError:
                if time.monotonic() > deadline or self.closed:
                    raise
                time.sleep(0.02)

    def running(self) -> bool:
        try:
            with engine_errors("inspecting a terminal"):
                return bool(self.client.api.exec_inspect(self.exec_id).get("Running"))
        except DockerError:
            return False

    def close(self) -> int:
        """End the session's processes and the stream; returns how many processes were
        ended. Safe to call twice."""
        if self.closed:
            return 0
        self.closed = True
        try:
            return end_session(self.client, self.container_id, self.user, self.marker)
        finally:
            try:
                self.socket.close()
            except OSError:
                pass
            if self.owns_client:
                self.client.close()


def check_size(rows, cols) -> tuple[int, int]:
    try:
        rows, cols = int(rows), int(cols)
    except (TypeError, ValueError):
        raise ValueError("a terminal size is two whole numbers") from None
    if not (1 <= rows <= MAX_ROWS and 1 <= cols <= MAX_COLS):
        raise ValueError(f"a terminal is 1-{MAX_ROWS} rows by 1-{MAX_COLS} columns")
    return rows, cols


def open(container_id: str, user: str, cmd: list[str], env: dict[str, str] | None = None,
         rows: int = 24, cols: int = 80, workdir: str | None = None,
         client=None) -> PtyExec:
    """Start `cmd` in the running container as `user` ("uid:gid", never root) with a
    terminal of rows x cols; returns the session."""
    if not user or user.split(":", 1)[0] in ("0", "root"):
        raise ValueError("a terminal runs as the container's own user, never as root")
    rows, cols = check_size(rows, cols)
    owns_client = client is None
    client = client or connect()
    marker = secrets.token_hex(16)
    environment = {**(env or {}), MARKER_NAME: marker}
    options = {"workdir": workdir} if workdir else {}
    try:
        with engine_errors(f"opening a terminal in container {container_id[:12]}"):
            created = client.api.exec_create(container_id, cmd, stdin=True, stdout=True,
                                             stderr=True, tty=True, user=user,
                                             environment=environment, **options)
        exec_id = created["Id"]
        sock = _start(client, exec_id)
    except BaseException:
        if owns_client:
            client.close()
        raise
    session = PtyExec(client, container_id, user, exec_id, sock, marker, owns_client)
    try:
        session.resize(rows, cols)
    except DockerError as exc:  # a command that ended at once: its output is still there
        log.info("terminal %s: first resize failed: %s", exec_id[:12], exc)
    return session


def _start(client, exec_id: str) -> socket.socket:
    """The exec's stream, both ways, on a connection of our own."""
    sock = _connect_engine()
    if sock is None:
        return _start_through_sdk(client, exec_id)
    body = json.dumps({"Detach": False, "Tty": True}).encode()
    request = (f"POST /v{client.api.api_version}/exec/{exec_id}/start HTTP/1.1\r\n"
               "Host: docker\r\nContent-Type: application/json\r\n"
               "Connection: Upgrade\r\nUpgrade: tcp\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        sock.settimeout(START_TIMEOUT)
        sock.sendall(request)
        status, rest = _read_head(sock)
        if status not in (101, 200):
            raise DockerError(f"starting a terminal: the engine answered {status}: "
                              f"{_error_text(sock, rest)}")
        sock.settimeout(None)  # an idle shell is no error
    except OSError as exc:
        sock.close()
        raise DockerError(f"starting a terminal: {exc}") from exc
    except DockerError:
        sock.close()
        raise
    return sock


def _connect_engine() -> socket.socket | None:
    """A new connection to the engine (unix socket or plain TCP), or None for what only
    the SDK speaks (TLS, SSH)."""
    address = engine_address()
    parts = urlsplit(address)
    try:
        if parts.scheme in ("unix", "http+unix"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(START_TIMEOUT)
            sock.connect(parts.path)
            return sock
        if parts.scheme == "tcp" and not os.environ.get("DOCKER_TLS_VERIFY"):
            return socket.create_connection((parts.hostname, parts.port or 2375),
                                            timeout=START_TIMEOUT)
    except OSError as exc:
        raise DockerError(f"cannot reach the Docker engine at {address}: {exc}") from exc
    return None


def _start_through_sdk(client, exec_id: str) -> socket.socket:
    """The SDK's socket, for engines reached over TLS or SSH: its read-only wrapper is
    unwrapped and its timeout lifted. (Output printed at the very first instant may be
    lost in the SDK's buffer: this path is the fallback, not the rule.)"""
    with engine_errors("starting a terminal"):
        wrapper = client.api.exec_start(exec_id, tty=True, socket=True)
    raw = getattr(wrapper, "_sock", wrapper)
    raw.settimeout(None)
    return raw


def _read_head(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the engine's answer; its headers are consumed and nothing after
    them (peeked first, then read exactly), so the terminal's first bytes stay in the
    socket. Returns (status, the head)."""
    head = b""
    while True:
        peeked = sock.recv(4096, socket.MSG_PEEK)
        if not peeked:
            raise DockerError("starting a terminal: the engine closed the connection")
        end = (head + peeked).find(b"\r\n\r\n", max(0, len(head) - 3))
        if end >= 0:
            head += _recv_exactly(sock, end + 4 - len(head))
            break
        head += _recv_exactly(sock, len(peeked))
        if len(head) > MAX_HEAD_BYTES:
            raise DockerError("starting a terminal: the engine's answer is too long")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        return int(status_line.split()[1]), head
    except (IndexError, ValueError):
        raise DockerError(f"starting a terminal: unexpected answer {status_line!r}") from None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise DockerError("starting a terminal: the engine closed the connection")
        data += chunk
    return data


def _error_text(sock: socket.socket, head: bytes) -> str:
    """The engine's error message (a small JSON body), as far as it can be read."""
    try:
        sock.settimeout(2)
        body = sock.recv(4096)
        return json.loads(body.split(b"\r\n")[-1] or body).get("message", "")[:300]
    except (OSError, ValueError, AttributeError):
        return head.split(b"\r\n", 1)[0].decode("latin-1")


def end_session(client, container_id: str, user: str, marker: str) -> int:
    """SIGHUP, then SIGKILL, to the processes of the terminal session `marker` in the
    container, as `user`; returns how many were signalled. A container that is gone or
    stopped has no processes left: 0."""
    if not marker.isalnum():
        raise ValueError("a session marker is letters and digits")
    try:
        with engine_errors(f"ending a terminal in container {container_id[:12]}"):
            created = client.api.exec_create(container_id, ["sh", "-c", END_SESSION, "sh",
                                                            marker], user=user)
            output = client.api.exec_start(created["Id"])
    except DockerError as exc:
        cause = exc.__cause__
        if isinstance(cause, docker.errors.APIError) and cause.status_code in (404, 409):
            return 0
        raise
    try:
        return int(output.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        log.warning("ending a terminal in %s: unexpected output %r", container_id[:12],
                    output[-200:])
        return 0
