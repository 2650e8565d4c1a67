"""Keystroke echo through the browser's shell against `docker exec -it` from a local pty.

Both ways type into the same bash (the appliance's terminal: its rc file, readline) in
the same running build's server container, one key at a time, and time each key from
the moment it is sent until its echo comes back:

- the Shell tab's way: the UI's one-time ticket, then the WebSocket of the daemon's
  shell server (binary frames), which writes to the exec's stream and sends back what
  the terminal prints (what a browser's xterm.js does, minus drawing);
- the bare way: `docker exec -it` of the same shell, its terminal a local pty.

It runs a daemon of its own (the stand-in Odoo, real Docker and PostgreSQL) in a
temporary folder, types KEYS keys each way per round (the ways alternated over ROUNDS),
and ends with the line a check reads: the WebSocket way's p95 and its ratio to the bare
way's p95:

    shell echo p95: <milliseconds> ms, <ratio>x

    .venv/bin/python bench/shell.py [--rounds 3] [--keys 300] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import inspect
import json
import os
import pty
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
import tty
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from appliance.runtime.image_recipes import SHELL_RC  # noqa: E402
from appliance.shell import sessions  # noqa: E402
from tests.integration.harness import Appliance, make_repo, push  # noqa: E402

KEYS = "abcdefghijklmnopqrstuvwxyz"
# After this many keys the line is cleared (Ctrl-U), so readline never scrolls.
LINE_KEYS = 40
KILL_LINE = b"\x15"
ECHO_TIMEOUT = 10.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


# -- the Shell tab's way ---------------------------------------------------------------

class UI:
    """A signed-in browser's side of the UI: cookies, the CSRF token, tickets."""

    def __init__(self, url: str, name: str, password: str):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        token = self._csrf("/login")
        self._open("/login", {"name": name, "password": password, "csrf_token": token})

    def _open(self, path: str, form: dict | None = None, headers: dict | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        if form is None and headers:
            request.method = "POST"
        with self.opener.open(request, timeout=30) as response:
            return response.read().decode()

    def _csrf(self, path: str) -> str:
        page = self._open(path)
        return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def ticket(self, build_id: int) -> dict:
        token = self._csrf(f"/builds/{build_id}/shell")
        answer = self._open(f"/builds/{build_id}/shell/ticket",
                            headers={"X-CSRF-Token": token, "Accept": "application/json"})
        return json.loads(answer)

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def _headers(cookie: str) -> dict:
    params = inspect.signature(websockets.connect).parameters
    key = "additional_headers" if "additional_headers" in params else "extra_headers"
    return {key: {"Cookie": cookie}}


async def _websocket_echoes(ui: UI, build_id: int, keys: int) -> list[float]:
    ticket = ui.ticket(build_id)
    async with websockets.connect(ticket["url"], origin=ui.url, compression=None,
                                  **_headers(ui.cookie())) as ws:
        await ws.send(json.dumps({"ticket": ticket["ticket"], "rows": 40, "cols": 120}))
        seen = b""
        while b"$ " not in seen:  # the prompt
            seen += await asyncio.wait_for(ws.recv(), ECHO_TIMEOUT)
        await _drain_ws(ws)
        times = []
        for n in range(keys):
            key = KEYS[n % len(KEYS)].encode()
            started = time.perf_counter()
            await ws.send(key)
            got = b""
            while key not in got:
                got += await asyncio.wait_for(ws.recv(), ECHO_TIMEOUT)
            times.append(time.perf_counter() - started)
            if (n + 1) % LINE_KEYS == 0:
                await ws.send(KILL_LINE)
                await _drain_ws(ws)
        await ws.close()
    return times


async def _drain_ws(ws, quiet: float = 0.2) -> None:
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet)
        except asyncio.TimeoutError:
            return


def websocket_echoes(ui: UI, build_id: int, keys: int) -> list[float]:
    return asyncio.run(_websocket_echoes(ui, build_id, keys))


# -- the bare way -------------------------------------------------------------------------

def _read(master: int, timeout: float) -> bytes:
    ready, _, _ = select.select([master], [], [], timeout)
    return os.read(master, 65536) if ready else b""


def _drain_pty(master: int, quiet: float = 0.2) -> None:
    while _read(master, quiet):
        pass


def exec_echoes(container: str, uid: int, keys: int) -> list[float]:
    """`docker exec -it` of the same shell, its terminal a local pty."""
    master, slave = pty.openpty()
    # Raw, as the docker CLI makes its terminal: every echo then comes from the
    # container's terminal, never from this pty's own line discipline.
    tty.setraw(slave)
    command = ["docker", "exec", "-it", "-u", f"{uid}:{uid}", "-e", "TERM=xterm-256color",
               "-e", "APPLIANCE_NAME=bench", container, "bash", "--rcfile", SHELL_RC, "-i"]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave,
                               start_new_session=True)
    os.close(slave)
    try:
        seen, deadline = b"", time.monotonic() + ECHO_TIMEOUT
        while b"$ " not in seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"docker exec gave no prompt: {seen[-300:]!r}")
            seen += _read(master, 0.5)
        _drain_pty(master)
        times = []
        for n in range(keys):
            key = KEYS[n % len(KEYS)].encode()
            started = time.perf_counter()
            os.write(master, key)
            got = b""
            while key not in got:
                chunk = _read(master, ECHO_TIMEOUT)
                if not chunk:
                    raise SystemExit("docker exec: no echo")
                got += chunk
            times.append(time.perf_counter() - started)
            if (n + 1) % LINE_KEYS == 0:
                os.write(master, KILL_LINE)
                _drain_pty(master)
        os.write(master, b"\x15exit\r")
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return times


# -- the run ----------------------------------------------------------------------------

def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=300, help="keys typed per way and round")
    parser.add_argument("--smoke", action="store_true", help="one short round")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.keys = 1, 20
    return args


def main() -> None:
    args = arguments()
    os.environ["APPLIANCE_BACKUP_DAILY"] = "false"
    with tempfile.TemporaryDirectory(prefix="bench-shell-") as tmp:
        folder = Path(tmp)
        app = Appliance(folder, "bench_shell")
        try:
            app.start()
            token = app.make_user("admin")
            app.make_project("acme")
            repo = make_repo(folder / "repo", "green")
            _, (build_id,) = push(repo, app.remote("acme", "admin", token), "feature")
            build = app.wait_build(build_id, timeout=600)
            if build["state"] != "running":
                raise SystemExit(f"build {build_id}: {build['reason']}")
            container = sessions.server_container(app.svc, build_id).id
            ui = UI(app.url, "admin", "password-admin")
            websocket_echoes(ui, build_id, 10), exec_echoes(container, app.config.runtime.uid, 10)
            through, bare = [], []
            for n in range(args.rounds):
                ways = [(lambda: websocket_echoes(ui, build_id, args.keys), through),
                        (lambda: exec_echoes(container, app.config.runtime.uid, args.keys),
                         bare)]
                for measure, into in (ways if n % 2 == 0 else ways[::-1]):
                    into.extend(measure())
        finally:
            app.close()
    ws50, ws95 = percentile(through, 0.5) * 1000, percentile(through, 0.95) * 1000
    ex50, ex95 = percentile(bare, 0.5) * 1000, percentile(bare, 0.95) * 1000
    print(f"keystroke echo, {args.keys} keys per way in each of {args.rounds} round(s):")
    print(f"  WebSocket shell (the Shell tab)   p50 {ws50:6.2f} ms   p95 {ws95:6.2f} ms   "
          f"mean {statistics.mean(through) * 1000:6.2f} ms")
    print(f"  docker exec -it from a local pty  p50 {ex50:6.2f} ms   p95 {ex95:6.2f} ms   "
          f"mean {statistics.mean(bare) * 1000:6.2f} ms")
    print("  (target: WebSocket p95 < 30 ms, at most 2x docker exec's)")
    print(f"shell echo p95: {ws95:.2f} ms, {ws95 / ex95:.2f}x")


if __name__ == "__main__":
    main()
