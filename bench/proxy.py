"""Caddy in front of a build, and a sleeping build's wake-up, against the bare ways.

throughput: requests per second to a production build's /web/health through Caddy
(HTTPS, its name resolved to loopback) against the same requests straight to the build's
published port (HTTP). The same client drives both: `wrk` (Debian's package; setup-host
installs it), one thread, CLIENTS keep-alive connections, in a process of its own so that
the client's CPU is not Python's. A warm-up run each way first (TLS sessions, Caddy's
first requests), then ROUNDS rounds of SECONDS each way, the order alternated from
round to round; the figure is the median of the rounds' ratios (each ratio of two runs
next to each other in time, so a load that comes and goes on the machine weighs on both).
wake: a development build put to sleep, then visited as a browser visits it (a new TLS
connection each time, a redirect followed at once, a waking page reloaded after its
Retry-After) until the first 200 from its Odoo; against `docker stop` then a plain
`docker start` of its server container until /web/login answers on the port Docker gives
it (polled every 0.05 s). WAKES times each; the figure is the ratio of the medians.

It runs a daemon (the stand-in Odoo, real Docker and PostgreSQL) and a Caddy of its own
on loopback ports, in a temporary folder, and ends with two lines a check reads:

    proxy throughput: <ratio>x
    wake: <ratio>x

    .venv/bin/python bench/proxy.py [--rounds 10] [--seconds 2] [--clients 4] [--wakes 5] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import layout  # noqa: E402
from appliance.jobs import containers  # noqa: E402
from appliance.store import projects as projects_store  # noqa: E402
from tests.caddy_server import CaddyUnderTest  # noqa: E402
from tests.integration.harness import Appliance, ShopWork  # noqa: E402

DOMAIN = "bench.test"
# A browser follows a redirect at once; a page without Retry-After is reloaded after this.
WAKE_POLL_SECONDS = 0.05
# wrk dials loopback whatever the URL names: the name still gives TLS its SNI and the
# request its Host header (wrk has no --resolve of its own).
WRK_SCRIPT = """
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"""


def wrk_rate(url: str, clients: int, seconds: int, script: Path) -> float:
    """Requests per second wrk made to `url` in `seconds`; any failed request stops the
    bench (a rate of errors measures nothing)."""
    run = subprocess.run(["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds}s",
                          "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode != 0 or "Non-2xx" in run.stdout or "Socket errors" in run.stdout:
        raise SystemExit(f"wrk {url} failed:\n{run.stdout}{run.stderr}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", run.stdout).group(1))


def throughput(app, caddy, build: dict, args, script: Path) -> tuple[list, list, list]:
    """The rates through Caddy and straight to the build, round by round, and the
    ratio of each round."""
    host = layout.build_host(app.config, "shop", "main", build["id"])
    through = f"https://{host}:{caddy.https_port}/web/health"
    direct = f"http://127.0.0.1:{build['host_port']}/web/health"
    for url in (through, direct):  # warm-up
        wrk_rate(url, args.clients, 1, script)
    proxied, bare = [], []
    for n in range(args.rounds):
        ways = [(through, proxied), (direct, bare)]
        for url, into in (ways if n % 2 == 0 else ways[::-1]):
            into.append(wrk_rate(url, args.clients, args.seconds, script))
    return proxied, bare, [p / b for p, b in zip(proxied, bare)]


class Client:
    """One TLS connection to Caddy, with SNI, to the name given."""

    def __init__(self, port: int, host: str, ca: Path):
        self.port, self.host = port, host
        self.context = ssl.create_default_context(cafile=str(ca))

    def get(self, path: str) -> tuple[int, dict]:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=10,
                                           context=self.context)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        # As browsers and http.client do: without it, the request waits behind the
        # handshake's last segment for Caddy's delayed ACK (40 ms here).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        try:
            conn.request("GET", path, headers={"Host": self.host})
            response = conn.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()


def state(app, build_id: int) -> dict:
    with app.db.transaction() as conn:
        return conn.execute("SELECT * FROM builds WHERE id = %s", (build_id,)).fetchone()


def put_to_sleep(app, build_id: int) -> None:
    time.sleep(1.5)  # uses noted so far are written down first
    with app.db.transaction() as conn:
        conn.execute("UPDATE builds SET last_used_at = now() - interval '1 hour' "
                     "WHERE id = %s", (build_id,))
    deadline = time.monotonic() + 30
    while not ((row := state(app, build_id))["asleep"] and row["state"] == "stopped"):
        if time.monotonic() > deadline:
            raise SystemExit(f"build {build_id} did not fall asleep")
        time.sleep(0.1)
    time.sleep(0.5)  # Caddy has its wake-up route


def wake(app, caddy, build_id: int) -> float:
    """Seconds from the first visit to the first 200 from the woken build."""
    client = Client(caddy.https_port, layout.build_host(app.config, "shop", "feature",
                                                        build_id), caddy.root_certificate)
    path = "/web/login"
    started = time.monotonic()
    while time.monotonic() - started < 120:
        try:
            status, headers = client.get(path)
        except (OSError, http.client.HTTPException):
            status, headers = 0, {}  # a browser would show an error: reload
        if status == 200:
            return time.monotonic() - started
        if status in (301, 302, 303, 307, 308):
            path = headers["location"]
            continue
        time.sleep(float(headers.get("retry-after", WAKE_POLL_SECONDS)))
    raise SystemExit(f"build {build_id} did not wake within 120 s")


def bare_start(app, build_id: int) -> float:
    """`docker stop` of the woken server, then seconds from `docker start` until its
    /web/login answers on the port Docker publishes."""
    name = containers.container_name(app.svc, build_id, "server")
    subprocess.run(["docker", "stop", "-t", "10", name], check=True, capture_output=True)
    started = time.monotonic()
    subprocess.run(["docker", "start", name], check=True, capture_output=True)
    port = subprocess.run(["docker", "port", name, f"{containers.HTTP_PORT}/tcp"],
                          check=True, capture_output=True, text=True).stdout
    port = int(port.split()[0].rsplit(":", 1)[1])
    while time.monotonic() - started < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/web/login", timeout=5):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the bare start did not answer within 120 s")


def wakes(app, caddy, build_id: int, count: int) -> tuple[list, list]:
    """The wake-up through the proxy and the bare start, `count` times each."""
    woken, bare = [], []
    for _ in range(count):
        put_to_sleep(app, build_id)
        woken.append(wake(app, caddy, build_id))
        bare.append(bare_start(app, build_id))
    return woken, bare


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--wakes", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one short round")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.clients, args.wakes = 1, 1, 2, 1
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: `apt-get install wrk` (scripts/setup-host.sh does)")
    return args


def start(folder: Path) -> tuple[Appliance, CaddyUnderTest]:
    caddy = CaddyUnderTest(folder / "caddy")
    caddy.start()
    settings = {"BASE_DOMAIN": DOMAIN, "ADMIN": caddy.admin, "TLS": "internal",
                "HTTPS_PORT": str(caddy.https_port), "HTTP_PORT": str(caddy.http_port),
                "CHECK_SECONDS": "0.5"}
    os.environ.update({f"APPLIANCE_PROXY_{k}": v for k, v in settings.items()})
    os.environ["APPLIANCE_BUILDS_SLEEP_MINUTES"] = "1"
    os.environ["APPLIANCE_BACKUP_DAILY"] = "false"
    app = Appliance(folder / "app", "bench_proxy")
    app.config.proxy = dataclasses.replace(app.config.proxy, base_domain=DOMAIN,
                                           https_port=caddy.https_port)
    return app, caddy


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        folder = Path(tmp)
        (folder / "caddy").mkdir()
        (folder / "app").mkdir()
        script = folder / "loopback.lua"
        script.write_text(WRK_SCRIPT)
        app, caddy = start(folder)
        try:
            app.start()
            app.token = app.make_user("admin")
            project = app.make_project("shop")
            with app.db.transaction() as conn:  # its builds open without signing in
                projects_store.set_public_access(conn, project, True)
            work = ShopWork(app, folder / "work")
            work.commit("v1")
            production = work.push("main")
            feature = work.push("feature")
            for build in (production, feature):
                if build["state"] != "running":
                    raise SystemExit(f"build {build['id']}: {build['reason']}")
            proxied, bare, ratios = throughput(app, caddy, production, args, script)
            woken, started = wakes(app, caddy, feature["id"], args.wakes)
        finally:
            app.close()
            caddy.stop()
    rates = lambda values: " ".join(f"{v:.0f}" for v in values)  # noqa: E731
    times = lambda values: " ".join(f"{v:.2f}" for v in values)  # noqa: E731
    print(f"/web/health with wrk, {args.clients} connections, median of {args.rounds} "
          f"round(s) of {args.seconds} s each way:")
    print(f"  through Caddy (HTTPS)   {statistics.median(proxied):8.0f} requests/s   "
          f"(rounds: {rates(proxied)})")
    print(f"  straight to the build   {statistics.median(bare):8.0f} requests/s   "
          f"(rounds: {rates(bare)})")
    print(f"  through/straight, each round: {times(ratios)}   (target: median >= 0.7x)")
    print(f"wake-up of a sleeping build: {statistics.median(woken):.2f} s to its first page; "
          f"docker start + ready {statistics.median(started):.2f} s   (medians of "
          f"{args.wakes}; target: <= 1.2x)")
    print(f"  each time: woken {times(woken)}; docker start + ready {times(started)}")
    print(f"proxy throughput: {statistics.median(ratios):.2f}x")
    print(f"wake: {statistics.median(woken) / statistics.median(started):.2f}x")


if __name__ == "__main__":
    main()
