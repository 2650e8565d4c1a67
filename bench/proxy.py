"""Caddy in front of a build, and a sleeping build's wake-up, against the bare ways.

throughput: requests per second to a production build's /web/health through Caddy
(HTTPS, its name resolved to loopback, one keep-alive connection per client) against the
same requests straight to the build's published port (HTTP), CLIENTS clients for SECONDS
each way, the ways alternated over ROUNDS; the median rates compared.
wake: a development build put to sleep, then visited as a browser would (the waking page
reloaded, here every 0.05 s) until the first 200 from its Odoo, against a plain `docker start`
of its stopped server container until /web/health answers on the port Docker gives it.

It runs a daemon (the stand-in Odoo, real Docker and PostgreSQL) and a Caddy of its own
on loopback ports, in a temporary folder, and ends with two lines a check reads:

    proxy throughput: <ratio>x
    wake: <ratio>x

    .venv/bin/python bench/proxy.py [--rounds 3] [--seconds 5] [--clients 4] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
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
# The waking page tells a browser to reload every second; this bench asks far more often,
# so that its figure is the build's start and not the page's period.
WAKE_POLL_SECONDS = 0.05


class Client:
    """One keep-alive connection: to Caddy with TLS and SNI, or to the build in HTTP."""

    def __init__(self, port: int, host: str | None = None, ca: Path | None = None):
        self.port, self.host = port, host
        self.context = ssl.create_default_context(cafile=str(ca)) if ca else None
        self.conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=10,
                                           context=self.context)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        return conn

    def get(self, path: str) -> int:
        if self.conn is None:
            self.conn = self._connect()
        self.conn.request("GET", path, headers={"Host": self.host or "127.0.0.1"})
        response = self.conn.getresponse()
        response.read()
        return response.status


def rate(make_client, clients: int, seconds: float) -> float:
    """Requests per second of `clients` clients, each on its own connection."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def work(index: int) -> None:
        client = make_client()
        while time.monotonic() < stop:
            if client.get("/web/health") != 200:
                raise SystemExit("/web/health did not answer 200")
            counts[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def throughput(app, caddy, build: dict, args) -> tuple[float, float]:
    host = layout.build_host(app.config, "shop", "main", build["id"])
    through = lambda: Client(caddy.https_port, host, caddy.root_certificate)  # noqa: E731
    direct = lambda: Client(build["host_port"])  # noqa: E731
    rate(through, 1, 0.5), rate(direct, 1, 0.5)  # warm-up: connections, certificates
    proxied, bare = [], []
    for n in range(args.rounds):
        ways = [(through, proxied), (direct, bare)]
        for make, into in (ways if n % 2 == 0 else ways[::-1]):
            into.append(rate(make, args.clients, args.seconds))
    return statistics.median(proxied), statistics.median(bare)


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
    host = layout.build_host(app.config, "shop", "feature", build_id)
    started = time.monotonic()
    while time.monotonic() - started < 120:
        try:
            if Client(caddy.https_port, host, caddy.root_certificate).get("/web/login") == 200:
                return time.monotonic() - started
        except (OSError, http.client.HTTPException):
            pass  # a connection cut while Caddy loads the new route: reload again
        time.sleep(WAKE_POLL_SECONDS)
    raise SystemExit(f"build {build_id} did not wake within 120 s")


def bare_start(app, build_id: int) -> float:
    """`docker stop` of the woken server, then seconds from `docker start` until its
    /web/health answers on the port Docker publishes."""
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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="one short round")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.clients = 1, 0.5, 2
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
            proxied, bare = throughput(app, caddy, production, args)
            put_to_sleep(app, feature["id"])
            woken = wake(app, caddy, feature["id"])
            started = bare_start(app, feature["id"])
        finally:
            app.close()
            caddy.stop()
    print(f"/web/health, {args.clients} clients, median of {args.rounds} round(s) of "
          f"{args.seconds:g} s:")
    print(f"  through Caddy (HTTPS)   {proxied:8.0f} requests/s")
    print(f"  straight to the build   {bare:8.0f} requests/s   (target: Caddy >= 0.7x)")
    print(f"wake-up of a sleeping build: {woken:.2f} s to its first page; "
          f"docker start + ready {started:.2f} s   (target: <= 1.2x)")
    print(f"proxy throughput: {proxied / bare:.2f}x")
    print(f"wake: {woken / started:.2f}x")


if __name__ == "__main__":
    main()
