"""Backups (restic) against bare pg_dump + cp -a, on the copy benchmarks' data.

appliance: `jobs.backup.create` of a production whose database is a clone of the bench's
1 GB database and whose filestore is a hard-linked copy of its 2 GB filestore (made
before the clock starts), into an empty repository: pg_dump -Fc -Z0 streamed into restic,
the files staged as hard links and backed up, the manifest. Baseline: `pg_dump -Fc` to a
file and `cp -a` of the filestore. Then 1% of the files are replaced by new ones (as Odoo
writes them: new <xx>/<sha1> files, the old ones gone) and a second backup is made: what
it adds to the repository (restic's data_added, before compression) against what it holds
(dump + files). Restore: `restic dump` piped into pg_restore plus `restic restore` of the
filestore, against pg_restore of the baseline's dump and `cp -a` of its filestore copy.
Each way is timed until its data is on disk (a sync ends it). Targets: first backup <=
2.0x, second backup < 3% of the total, restore <= 1.5x. It ends with three lines:

    first backup: <ratio>x
    second backup added: <percent>%
    restore: <ratio>x

    .venv/bin/python bench/backup.py [--db-mb 1024] [--files-mb 2048] [--config F] [--smoke]

A scratch state database and a repository of its own are made and removed; the kept data
(--data) is only read.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from copydata import ROLE, ROLE_PASSWORD, ROOT, arguments, bench_data, sync
from psycopg import sql

from appliance import config as config_mod
from appliance.jobs import backup
from appliance.runtime import filestore
from appliance.services import Services
from appliance.store import builds as builds_store
from appliance.store import db as store_db
from appliance.store import projects as projects_store

TARGET = "appl_bench_backup"
CHANGED_SHARE = 0.01


def configure(config: Path, state_db: str, folder: Path) -> config_mod.Config:
    """The appliance's config for the run: PostgreSQL as `config` says, the state in
    `state_db`, the data folder (and so the repository) in `folder`."""
    cfg = config_mod.load(config)
    cfg.database.dsn = psycopg.conninfo.make_conninfo(cfg.database.dsn, dbname=state_db)
    cfg.paths.data_dir = folder
    cfg.odoo.versions = {"18.0": config_mod.OdooVersion(str(ROOT / "tests" / "odoo_stub"), "")}
    return cfg


def client(pg, database: str) -> tuple[str, dict]:
    """A pg_dump/pg_restore --dbname for `database` and its environment (the password)."""
    params = psycopg.conninfo.conninfo_to_dict(store_db.conninfo(pg.cfg))
    env = {**os.environ, "PGPASSWORD": str(params.pop("password", ""))}
    return f"--dbname={psycopg.conninfo.make_conninfo(**dict(params, dbname=database))}", env


def scratch_state(cfg: config_mod.Config, name: str, create: bool) -> None:
    admin = psycopg.conninfo.make_conninfo(store_db.conninfo(cfg.database), dbname="appliance")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def production(svc: Services, database: str, data_dir: Path) -> dict:
    """A project whose production serves `database` with Odoo's data dir `data_dir`."""
    with svc.db.transaction() as conn:
        project = projects_store.create_project(conn, "bench-backup", "18.0", "appl_bench_")
        # The bench's databases are owned by its role: the project's role is that one (the
        # appliance works in a project's databases as their owner only).
        project = conn.execute("UPDATE projects SET db_role = %s, db_password = %s "
                               "WHERE id = %s RETURNING *",
                               (ROLE, ROLE_PASSWORD, project["id"])).fetchone()
        branch, _ = projects_store.ensure_branch(conn, project, "main")
        build = builds_store.enqueue(conn, project=project, branch=branch, commit="0" * 40)
        conn.execute("UPDATE builds SET state = 'running', database = %s, data_dir = %s "
                     "WHERE id = %s", (database, str(data_dir), build["id"]))
    return project


def timed(func, *args) -> float:
    started = time.monotonic()
    func(*args)
    sync()
    return time.monotonic() - started


def bare_backup(pg, database: str, files: Path, out: Path) -> None:
    dbname, env = client(pg, database)
    subprocess.run(["pg_dump", "-Fc", "-f", str(out / "dump"), dbname], check=True, env=env)
    subprocess.run(["cp", "-a", str(files), str(out / "filestore")], check=True)


def restored(data) -> str:
    return f"{data.target}_r"


def bare_restore(pg, name: str, out: Path, target: Path) -> None:
    pg.create_database(name, ROLE)
    dbname, env = client(pg, name)
    subprocess.run(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", dbname,
                    str(out / "dump")], check=True, env=env)
    subprocess.run(["cp", "-a", str(out / "filestore"), str(target)], check=True)


def appliance_restore(svc: Services, pg, name: str, row: dict, target: Path) -> None:
    pg.create_database(name, ROLE)
    dbname, env = client(pg, name)
    with backup.open_dump(svc, row) as stream:
        subprocess.run(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", dbname],
                       stdin=stream, check=True, env=env)
    backup.restore_files(svc, row, target)


def change_files(folder: Path, share: float) -> int:
    """Replace `share` of the files by as many new ones of the same sizes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".complete")
    rng = random.Random(7)
    for path in rng.sample(files, max(1, int(len(files) * share))):
        size = path.stat().st_size
        path.unlink()
        data = rng.randbytes(size)
        name = hashlib.sha1(data).hexdigest()
        (folder / name[:2]).mkdir(exist_ok=True)
        (folder / name[:2] / name).write_bytes(data)
    return max(1, int(len(files) * share))


def main() -> None:
    args = arguments(__doc__, rounds=1)
    state = f"appliance_bench_backup_{os.getpid()}"
    with bench_data(args, TARGET, "backup-production") as data, \
            tempfile.TemporaryDirectory(prefix="appliance-bench-backup-",
                                        dir=args.data if not args.smoke else None) as work:
        work = Path(work)
        cfg = configure(args.config, state, work / "state")
        scratch_state(cfg, state, create=True)
        db = store_db.Database(cfg.database, max_size=4).open()
        try:
            store_db.migrate(db)
            svc = Services(cfg, db)
            run(svc, data, work)
        finally:
            db.close()
            scratch_state(cfg, state, create=False)
            data.pg.drop_database(restored(data))


def run(svc: Services, data, work: Path) -> None:
    pg, database = data.pg, data.target
    pg.drop_database(database)
    pg.clone_database(data.source, database, ROLE)
    live = data.copy / "filestore" / database
    filestore.hardlink_copy(data.files, live)
    project = production(svc, database, data.copy)
    backup.repository(svc)  # made before the clock starts: once per appliance
    size, files = pg.database_size(database), filestore.tree_size(live)
    print(f"a {size // 2**20} MB database and a {files // 2**20} MB filestore", flush=True)

    (work / "bare").mkdir()
    bare = timed(bare_backup, pg, database, live, work / "bare")
    rows = []
    ours = timed(lambda: rows.append(backup.create(svc, project)))
    first = rows[-1]
    print(f"  first backup: appliance {ours:6.1f} s, pg_dump -Fc + cp -a {bare:6.1f} s",
          flush=True)

    changed = change_files(live, CHANGED_SHARE)
    second = backup.create(svc, project)
    total = second["dump_bytes"] + second["files_bytes"]
    print(f"  second backup after {changed} files changed: {second['bytes_added'] / 2**20:.1f}"
          f" MB added of {total / 2**20:.0f} MB, in {second['seconds']:.1f} s", flush=True)

    restore_bare = timed(bare_restore, pg, restored(data), work / "bare",
                         work / "restored-bare")
    pg.drop_database(restored(data))
    restore_ours = timed(appliance_restore, svc, pg, restored(data), first,
                         work / "restored")
    print(f"  restore: appliance {restore_ours:6.1f} s, pg_restore + cp -a "
          f"{restore_bare:6.1f} s", flush=True)
    shutil.rmtree(work / "restored-bare", ignore_errors=True)

    print(f"first backup: {ours / bare:.2f}x")
    print(f"second backup added: {100 * second['bytes_added'] / total:.2f}%")
    print(f"restore: {restore_ours / restore_bare:.2f}x")


if __name__ == "__main__":
    main()
