"""The appliance's overhead for a development build.

Push-to-green (from `git push` until the build is running with a green result) against a
bare `odoo-bin -i <modules> --test-enable --stop-after-init` of the same addon in the same
image, on a fresh database, run in the same process right after. Both use the stand-in
Odoo unless APPLIANCE_BENCH_ODOO_SOURCE names a real Odoo tree (with
APPLIANCE_BENCH_REQUIREMENTS, a requirements.txt line the tree needs). Prints medians over
ROUNDS (3), the overhead in seconds and the ratio. Target: at most 2 s of overhead.
`--smoke` runs one round: it checks the bench works, one round's figures mean little.

    .venv/bin/python bench/dev_build.py [ROUNDS] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config import ODOO_DEBIAN_PACKAGES  # noqa: E402
from appliance.jobs import containers, development  # noqa: E402
from appliance.runtime import buildfs, odoo  # noqa: E402
from tests.integration.harness import Appliance, git, make_repo  # noqa: E402

ADDON_SET = "green"


def push_to_green(app: Appliance, repo: Path, remote: str, branch: str) -> float:
    (repo / "bench.txt").write_text(branch)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", branch)
    started = time.monotonic()
    result = git(repo, "push", remote, f"HEAD:refs/heads/{branch}")
    build_id = int(result.stderr.split("build #")[1].split()[0])
    while True:
        with app.db.transaction() as conn:
            row = conn.execute("SELECT state, result FROM builds WHERE id = %s",
                               (build_id,)).fetchone()
        if row["state"] in ("running", "failed"):
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    if (row["state"], row["result"]) != ("running", "success"):
        raise SystemExit(f"build {build_id} ended {row['state']}/{row['result']}")
    return elapsed


def bare_install(app: Appliance, build_id: int, folder: Path, round_no: int) -> float:
    """The same install in the same image, started by hand on a fresh database: the
    build's container set-up (mounts, environment, read-only root with its tmpfs) with an
    odoo.conf and a data dir of its own in `folder`, so the build's stay as they are."""
    svc = app.svc
    with app.db.transaction() as conn:
        build = conn.execute("SELECT * FROM builds WHERE id = %s", (build_id,)).fetchone()
        project = conn.execute("SELECT * FROM projects WHERE id = %s",
                               (build["project_id"],)).fetchone()
    name = f"appl_bench_bare_{os.getpid()}_{round_no}"
    svc.postgres.drop_database(name)
    svc.postgres.create_database(name, project["db_role"])
    stored = containers.stored_setup(svc, project, build)
    paths = dataclasses.replace(stored.paths, root=folder, data=folder / "data",
                                logs=folder / "logs")
    buildfs.make_folder(folder, None, containers.FOLDER_MODE)
    containers.make_writable(paths.data, svc.config.runtime.uid)
    setup = dataclasses.replace(stored, database=name, paths=paths)
    modules = build["modules"].split(",")
    command = odoo.install_command(**containers.common_args(svc, setup), modules=modules,
                                   demo=True, test_enable=True,
                                   test_tags=development.test_tags(project, modules))
    output: list[str] = []
    started = time.monotonic()
    info = svc.docker.start(name=f"appl-bench-bare-{os.getpid()}-{round_no}",
                            image=setup.image, command=command,
                            labels=containers.labels(setup, "task"),
                            mounts=containers.mounts(svc, setup), env=containers.environment(),
                            network=svc.docker.ensure_network(project["name"]),
                            tmpfs=containers.TMPFS)
    try:
        code = svc.docker.follow_to_end(info.id, svc.config.builds.install_timeout,
                                        output.append)
        elapsed = time.monotonic() - started
    finally:
        svc.docker.remove(info.id)
        svc.postgres.drop_database(name)
    if code != 0:
        raise SystemExit(f"bare install exited {code}:\n{''.join(output)[-3000:]}")
    return elapsed


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rounds", nargs="?", default=3, type=int)
    parser.add_argument("--smoke", action="store_true",
                        help="one round: checks the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds = 1
    if args.rounds < 1:
        parser.error("needs at least 1 round")
    return args


def main() -> None:
    rounds = arguments().rounds
    with tempfile.TemporaryDirectory() as tmp:
        real = os.environ.get("APPLIANCE_BENCH_ODOO_SOURCE")
        app = (Appliance(Path(tmp), "bench", odoo_source=Path(real),
                         packages=list(ODOO_DEBIAN_PACKAGES)) if real
               else Appliance(Path(tmp), "bench"))
        try:
            app.start()
            token = app.make_user("admin")
            app.make_project("bench")
            remote = app.remote("bench", "admin", token)
            extra = os.environ.get("APPLIANCE_BENCH_REQUIREMENTS")
            repo = make_repo(Path(tmp) / "repo", ADDON_SET,
                             {"requirements.txt": extra + "\n"} if extra else None)
            push_to_green(app, repo, remote, "warmup")  # images and bytecode caches
            green, bare, steps = [], [], {}
            for n in range(rounds):
                green.append(push_to_green(app, repo, remote, f"round-{n}"))
                with app.db.transaction() as conn:
                    last = conn.execute("SELECT max(id) AS id FROM builds").fetchone()["id"]
                for step in app.steps(last):
                    steps.setdefault(step["name"], []).append(step["seconds"])
                bare.append(bare_install(app, last, Path(tmp) / f"bare-{n}", n))
        finally:
            app.close()
    g, b = statistics.median(green), statistics.median(bare)
    print(f"development build, median of {rounds} rounds ({ADDON_SET} addon):")
    print(f"  push-to-green      {g:6.2f} s   (each: {', '.join(f'{x:.2f}' for x in green)})")
    print(f"  bare odoo-bin -i   {b:6.2f} s   (each: {', '.join(f'{x:.2f}' for x in bare)})")
    print(f"  overhead           {g - b:6.2f} s   ratio {g / b:.2f}x   (target: <= 2 s)")
    print("  steps (median s): " + ", ".join(f"{name} {statistics.median(values):.2f}"
                                             for name, values in steps.items()))


if __name__ == "__main__":
    main()
