"""The project page of an agency-sized project: time and size, full and polled.

Makes a scratch state database with one project of --branches branches (one production,
two staging, the rest development) and --builds builds each, with what real builds leave
behind: commit messages with a body, steps, push events, failed tests and warnings on
some, two builds in progress (so the page polls). Serves the real app under waitress in
this process, signs in, and times over --rounds requests each:

- the project page (`/projects/<name>`), what a browser gets on opening it;
- the list's poll as htmx sends it when something changed (the whole fragment);
- the same poll when nothing changed (it carries the ETag of what it shows);
- the builds API's first page;

then --clients sessions polling the whole fragment at once (what open tabs cost the
daemon). Prints p50 and p95 of each and the sizes, and ends with the line

    project page p95: <ms> ms, <KB> KB

Target at 100 branches x 100 builds: p95 under 100 ms and under 150 KB; an unchanged poll
in a few ms. `--smoke` makes a few rows and runs one round: it checks the bench works,
its figures mean nothing.

    .venv/bin/python bench/ui.py [--branches 100] [--builds 100] [--rounds 50] [--clients 7]
    .venv/bin/python bench/ui.py --smoke

The config (--config, default $APPLIANCE_CONFIG, else var/appliance.toml) says how to
reach PostgreSQL; its role must be able to create databases. The scratch database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import os
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from waitress import create_server  # noqa: E402

from appliance import config as config_mod  # noqa: E402
from appliance.store import db as store_db  # noqa: E402
from appliance.store import projects as projects_store  # noqa: E402
from appliance.store import users as users_store  # noqa: E402
from appliance.web.app import create_app  # noqa: E402
from bench.scratch import scratch_state  # noqa: E402

PROJECT = "bench-ui"
USER, PASSWORD = "bench", "bench-password"
STEPS = ("checkout", "image", "database", "install", "classify", "start", "health")
WORDS = ("sale", "stock", "invoice", "rounding", "discount", "currency", "picking", "report",
         "portal", "website", "payment", "tax", "partner", "journal", "fiscal", "position")
HOST = "127.0.0.1"


# The data ------------------------------------------------------------------------------

def message(rng: random.Random, n: int) -> str:
    """A commit message as people write them: a subject and a wrapped body."""
    tag = rng.choice(("[FIX]", "[IMP]", "[ADD]", "[REF]"))
    subject = f"{tag} {rng.choice(WORDS)}_custom: {' '.join(rng.sample(WORDS, 5))} (#{n})"
    body = "\n".join(" ".join(rng.choices(WORDS, k=10)) for _ in range(rng.randint(2, 8)))
    return f"{subject}\n\n{body}"


def state_of(rng: random.Random, stage: str, age: int) -> tuple[str, str]:
    """(state, result) of a build `age` builds older than its branch's newest."""
    result = rng.choices(("success", "warning", "failure"), (7, 2, 1))[0]
    if age == 0:
        return ("running" if result != "failure" else "failed"), result
    if stage == "development" and age > 2:
        return "dropped", result
    return ("done" if stage != "development" else "stopped"), result


def build_rows(rng, project_id: int, branch: dict, ids: list[int], start: dt.datetime):
    """The rows of a branch's builds (ids ascending: the last is the newest)."""
    for age, build_id in zip(range(len(ids) - 1, -1, -1), ids):
        state, result = state_of(rng, branch["stage"], age)
        created = start + dt.timedelta(minutes=37 * build_id)
        failed = [{"module": "sale_custom", "name": f"test_{w}.TestIt.test_{w}", "kind": "failure",
                   "traceback": "Traceback (most recent call last):\n" + "  File ...\n" * 12
                   + "AssertionError: 1 != 2"} for w in rng.sample(WORDS, 2)
                  ] if result == "failure" else []
        warnings = [f"2024-05-01 10:00:0{i},000 7 WARNING db odoo.models: {w} is deprecated"
                    for i, w in enumerate(rng.sample(WORDS, 3))] if result == "warning" else []
        plan = {"update": {"sale_custom": ["18.0.1.0", "18.0.1.1"]}, "install": []} \
            if branch["stage"] == "production" else {}
        yield (build_id, project_id, branch["id"], hashlib.sha1(str(build_id).encode()).hexdigest(),
               message(rng, build_id), "Ada Lovelace <ada@example.com>", branch["stage"], state,
               result, "", Jsonb(failed), Jsonb(warnings), "sale_custom,stock_custom", "addons",
               Jsonb(plan), created, created + dt.timedelta(seconds=20),
               created + dt.timedelta(seconds=95))


def make_branches(conn, project: dict, count: int) -> list[dict]:
    names = ["main"] + [f"staging-{n}" for n in (1, 2)] + [
        f"feature/{n:03d}-{WORDS[n % len(WORDS)]}-{WORDS[(n * 7) % len(WORDS)]}"
        for n in range(count - 3)]
    branches = []
    for n, name in enumerate(names[:count]):
        stage = "production" if n == 0 else "staging" if name.startswith("staging-") \
            else "development"
        branches.append(conn.execute(
            "INSERT INTO branches (project_id, name, stage) VALUES (%s, %s, %s) RETURNING *",
            (project["id"], name, stage)).fetchone())
    return branches


def make_data(db: store_db.Database, branches_count: int, builds_count: int) -> dict:
    """The project, its branches, builds, steps, events; returns the project row."""
    rng = random.Random(100)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    with db.transaction() as conn:
        user = users_store.create_user(conn, USER, PASSWORD, is_admin=True)
        project = projects_store.create_project(conn, PROJECT, "18.0", "appl_bench_")
        branches = make_branches(conn, project, branches_count)
        # Builds interleave across branches as pushes do: build i belongs to branch i % B.
        rows = []
        for n, branch in enumerate(branches):
            ids = [k * len(branches) + n + 1 for k in range(builds_count)]
            rows += build_rows(rng, project["id"], branch, ids, start)
        rows.sort(key=lambda row: row[0])
        with conn.cursor() as cur:
            with cur.copy("""COPY builds (id, project_id, branch_id, commit, commit_message,
                             author, stage, state, result, reason, failed_tests, warnings,
                             modules, addons_dirs, plan, created_at, started_at, finished_at)
                             FROM STDIN""") as copy:
                for row in rows:
                    copy.write_row(row)
            with cur.copy("""COPY build_steps (build_id, position, name, state, seconds)
                             FROM STDIN""") as copy:
                for row in rows:
                    for position, name in enumerate(STEPS):
                        copy.write_row((row[0], position, name, "done", 1.5 + position))
            with cur.copy("""COPY events (project_id, branch_id, build_id, user_id, kind, message,
                             data, created_at) FROM STDIN""") as copy:
                for row in rows:
                    copy.write_row((project["id"], row[2], row[0], user["id"], "commit",
                                    row[4].splitlines()[0],
                                    Jsonb({"commits": [{"id": row[3], "message": row[4],
                                                        "author": row[5]}]}), row[15]))
        conn.execute("SELECT setval('builds_id_seq', (SELECT max(id) FROM builds))")
        # Two builds in progress, as while people push: the page polls.
        for branch, state in zip(branches[-2:], ("testing", "queued")):
            conn.execute("""INSERT INTO builds (project_id, branch_id, commit, commit_message,
                                                stage, state) VALUES (%s, %s, %s, %s, %s, %s)""",
                         (project["id"], branch["id"], "f" * 40, message(rng, 0),
                          branch["stage"], state))
    with db.pool.connection() as conn:
        conn.autocommit = True
        conn.execute("ANALYZE")
    return project


# The measures --------------------------------------------------------------------------

def signed_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    response = session.post(f"{base}/login", allow_redirects=False,
                            data={"name": USER, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise SystemExit(f"could not sign in: {response.status_code}")
    return session


def timed(session: requests.Session, url: str, rounds: int, **headers):
    """Seconds of each of `rounds` GETs after one warm-up, and the last response."""
    session.get(url, headers=headers)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = session.get(url, headers=headers)
        seconds.append(time.perf_counter() - started)
        if response.status_code not in (200, 204, 304):
            raise SystemExit(f"GET {url}: {response.status_code}")
    return seconds, response


def p95(seconds: list[float]) -> float:
    if len(seconds) < 2:
        return seconds[0]
    return statistics.quantiles(seconds, n=20, method="inclusive")[-1]


def line(label: str, seconds: list[float], response: requests.Response) -> str:
    return (f"  {label:<28} p50 {statistics.median(seconds) * 1000:6.1f} ms   "
            f"p95 {p95(seconds) * 1000:6.1f} ms   {len(response.content) / 1024:7.1f} KB   "
            f"({response.status_code})")


def concurrent_polls(base: str, url: str, clients: int, per_client: int) -> float:
    """Whole fragments per second with `clients` sessions asking at once."""
    sessions = [signed_in(base) for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def poll(session):
        barrier.wait()
        for _ in range(per_client):
            session.get(url, headers={"HX-Request": "true"}).raise_for_status()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(poll, sessions))
    return clients * per_client / (time.perf_counter() - started)


def measure(base: str, rounds: int, clients: int) -> tuple[float, int]:
    session = signed_in(base)
    page_url = f"{base}/projects/{PROJECT}"
    page, response = timed(session, page_url, rounds)
    lines = [line("project page", page, response)]
    size = len(response.content)
    fragment, response = timed(session, page_url, rounds, **{"HX-Request": "true"})
    lines.append(line("poll, something changed", fragment, response))
    etag = response.headers.get("ETag")
    if etag:
        unchanged, response = timed(session, page_url, rounds,
                                    **{"HX-Request": "true", "If-None-Match": etag})
        lines.append(line("poll, nothing changed", unchanged, response))
    else:
        lines.append("  poll, nothing changed        (no ETag: every poll renders the list)")
    api, response = timed(session, f"{base}/api/projects/{PROJECT}/builds", rounds)
    lines.append(line("builds API, first page", api, response))
    if "next" in response.links:
        api, response = timed(session, base + response.links["next"]["url"], rounds)
        lines.append(line("builds API, next page", api, response))
    rate = concurrent_polls(base, page_url, clients, max(1, rounds // 5))
    lines.append(f"  whole list polled by {clients} sessions at once: {rate:.1f} lists/s")
    print("\n".join(lines))
    return p95(page), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--branches", default=100, type=int)
    parser.add_argument("--builds", default=100, type=int, help="per branch")
    parser.add_argument("--rounds", default=50, type=int)
    parser.add_argument("--clients", default=7, type=int)
    parser.add_argument("--smoke", action="store_true",
                        help="3 branches x 3 builds, one round: checks the bench runs")
    parser.add_argument("--config", type=Path,
                        default=Path(os.environ.get("APPLIANCE_CONFIG",
                                                    ROOT / "var" / "appliance.toml")))
    args = parser.parse_args()
    if args.smoke:
        args.branches, args.builds, args.rounds, args.clients = 3, 3, 1, 1
    if args.branches < 3 or args.builds < 1 or args.rounds < 1 or args.clients < 1:
        parser.error("needs at least 3 branches, 1 build, 1 round and 1 client")
    cfg = config_mod.load(args.config)
    server = None
    with scratch_state(cfg, "ui") as db:
        try:
            started = time.perf_counter()
            make_data(db, args.branches, args.builds)
            print(f"ui bench: {args.branches} branches x {args.builds} builds made in "
                  f"{time.perf_counter() - started:.1f} s; {args.rounds} rounds each")
            server = create_server(create_app(cfg, db), host=HOST, port=0,
                                   threads=cfg.server.threads)
            threading.Thread(target=server.run, name="waitress-bench", daemon=True).start()
            seconds, size = measure(f"http://{HOST}:{server.effective_port}", args.rounds,
                                    args.clients)
        finally:
            if server:
                server.close()
    print(f"project page p95: {seconds * 1000:.0f} ms, {size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
