"""A staging copy of a live production, database and filestore, against the naive way.

appliance, live:  copy_live_database (pg_dump | pg_restore, one snapshot, while a session
                  holds an uncommitted write) + hard-linked filestore
appliance, idle:  clone_database (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY) +
                  hard links, for a source that can be idle
naive:            pg_dump | psql (on the same live source) + cp -a of the filestore
Every way then runs the SQL of base's neutralize on its copy; `odoo-bin neutralize` itself
needs Odoo and is not run. Each way is timed until it returns and again after a sync,
when its copy is on disk. Targets: live at least 1.7x faster than naive, idle 5x.

    (cd bench && ../.venv/bin/python staging_clone.py [--db-mb 1024] [--files-mb 2048] [--smoke])
"""

from __future__ import annotations

import statistics
import subprocess

from copydata import ROLE, Data, arguments, bench_data, in_use, neutralize, shell, sync, timed

from appliance.runtime import filestore

TARGET = "appl_bench_copy"
TARGETS = {"live": "1.7x", "idle": "5x"}


def live(data: Data) -> None:
    with in_use(data.pg, data.source):
        data.pg.copy_live_database(data.source, data.target, ROLE)
    filestore.hardlink_copy(data.files, data.copy)
    neutralize(data.pg, data.target)


def idle(data: Data) -> None:
    data.pg.clone_database(data.source, data.target, ROLE)
    filestore.hardlink_copy(data.files, data.copy)
    neutralize(data.pg, data.target)


def naive(data: Data) -> None:
    data.pg.create_database(data.target, ROLE)
    with in_use(data.pg, data.source):
        shell(f"pg_dump -h 127.0.0.1 -U appliance {data.source} | "
              f"psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U appliance {data.target}",
              data.pg.cfg.password)
    subprocess.run(["cp", "-a", str(data.files), str(data.copy)], check=True)
    neutralize(data.pg, data.target)


def main() -> None:
    args = arguments(__doc__, rounds=3)
    ways = {"naive": naive, "live": live, "idle": idle}
    returned = {way: [] for way in ways}
    on_disk = {way: [] for way in ways}
    with bench_data(args, TARGET, "copy") as data:
        for _ in range(args.rounds):
            for way, run in ways.items():
                data.clear()
                sync()
                seconds = timed(run, data)
                returned[way].append(seconds)
                on_disk[way].append(seconds + timed(sync))
        report(data, args.rounds, returned, on_disk)


def report(data: Data, rounds, returned, on_disk) -> None:
    a = {way: statistics.median(values) for way, values in returned.items()}
    b = {way: statistics.median(values) for way, values in on_disk.items()}
    print(f"staging copy of a {data.pg.database_size(data.source) // 2**20} MB database and a "
          f"{filestore.tree_size(data.files) // 2**20} MB filestore, median of {rounds}:")
    for way, label in (("naive", "naive (pg_dump | psql, cp -a)"),
                       ("live", "appliance, live source"), ("idle", "appliance, idle source")):
        print(f"  {label:31s} {a[way]:6.2f} s   {b[way]:6.2f} s with sync")
    for way, target in TARGETS.items():
        print(f"  naive / {way}  {a['naive'] / a[way]:5.2f}x   {b['naive'] / b[way]:5.2f}x with "
              f"sync   (target >= {target})")


if __name__ == "__main__":
    main()
