"""The appliance's overhead for a development build.

Push-to-green (from `git push` until the build is running with a green result) against a
bare `odoo-bin -i <modules> --test-enable --stop-after-init` of the same addon in the same
image, on a fresh database, run in the same process right after. Both use the stand-in
Odoo unless APPLIANCE_BENCH_ODOO_SOURCE names a real Odoo tree (with
APPLIANCE_BENCH_REQUIREMENTS, a requirements.txt line the tree needs). Prints medians over
ROUNDS, the overhead in seconds and the ratio. Target: at most 2 s of overhead.

    .venv/bin/python bench/dev_build.py [ROUNDS]
"""

from __future__ import annotations

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
from appliance.runtime import odoo  # noqa: E402
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


def bare_install(app: Appliance, build_id: int, round_no: int) -> float:
    """The same install in the same image, started by hand on a fresh database."""
    svc = app.svc
    with app.db.transaction() as conn:
        build = dict(conn.execute("SELECT b.*, p.name AS project FROM builds b JOIN projects p "
                                  "ON p.id = b.project_id WHERE b.id = %s",
                                  (build_id,)).fetchone())
        project = conn.execute("SELECT * FROM projects WHERE id = %s",
                               (build["project_id"],)).fetchone()
    name = f"appl_bench_bare_{os.getpid()}_{round_no}"
    svc.postgres.drop_database(name)
    svc.postgres.create_database(name, project["db_role"])
    build["database"] = name
    paths = containers.build_paths(svc.config, build_id)
    dirs = build["addons_dirs"].split(",")
    modules = build["modules"].split(",")
    command = odoo.install_command(**containers.common_args(svc, project, build, dirs),
                                   logfile=None, modules=modules, demo=True, test_enable=True,
                                   test_tags=development.test_tags(project, modules))
    started = time.monotonic()
    info = svc.docker.start(name=f"appl-bench-bare-{os.getpid()}-{round_no}",
                            image=build["image"], command=command,
                            labels=containers.labels(project, build, "task"),
                            mounts=containers.mounts(svc, project, paths),
                            env=containers.environment(project),
                            network=svc.docker.ensure_network(project["name"]))
    code = svc.docker.wait(info.id, 600)
    elapsed = time.monotonic() - started
    svc.docker.remove(info.id)
    svc.postgres.drop_database(name)
    if code != 0:
        raise SystemExit(f"bare install exited {code}")
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
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
                bare.append(bare_install(app, last, n))
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
