"""A staging copy of a live production: database + filestore, against the naive way.

appliance (live):  pg_dump | pg_restore of the database in use + hard-link filestore copy
appliance (idle):  CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY + hard links, for a
                   source that can be idle (snapshot in maintenance, staging to staging)
naive:             pg_dump | psql + cp -a of the filestore
Neutralize (about 0.7 s on real Odoo) needs Odoo and is left out of both sides.
Targets: live at least 1.7x faster than naive; idle at least 5x.

    .venv/bin/python bench/staging_clone.py [--db-mb 1024] [--files-mb 2048] [--rounds 3]
"""

from __future__ import annotations

import statistics
import subprocess

from copydata import (ROLE, SOURCE, arguments, ensure_database, ensure_filestore, postgres,
                      sh, timed)

from appliance.runtime import filestore

TARGET = "appl_bench_copy"


def main() -> None:
    args = arguments(__doc__)
    pg = postgres()
    ensure_database(pg, args.db_mb)
    files = ensure_filestore(args.data / "filestore", args.files_mb)
    copy = args.data / "copy"
    password = pg.cfg.password
    results = {"live": [], "idle": [], "naive": []}
    for _ in range(args.rounds):
        for way in results:
            pg.drop_database(TARGET)
            filestore.remove_tree(copy)
            if way == "live":
                seconds = timed(pg.copy_live_database, SOURCE, TARGET, ROLE)
                seconds += timed(filestore.hardlink_copy, files, copy)
            elif way == "idle":
                seconds = timed(pg.clone_database, SOURCE, TARGET, ROLE)
                seconds += timed(filestore.hardlink_copy, files, copy)
            else:
                pg.create_database(TARGET, ROLE)
                seconds = timed(sh, f"pg_dump -h 127.0.0.1 -U appliance {SOURCE} | "
                                    f"psql -q -h 127.0.0.1 -U appliance {TARGET}", password)
                seconds += timed(subprocess.run, ["cp", "-a", str(files), str(copy)])
            results[way].append(seconds)
    pg.drop_database(TARGET)
    filestore.remove_tree(copy)
    median = {way: statistics.median(values) for way, values in results.items()}
    size = pg.database_size(SOURCE) // 2**20
    print(f"staging copy of a {size} MB database and a {filestore.tree_size(files) // 2**20} MB "
          f"filestore, median of {args.rounds}:")
    for way, label in (("naive", "naive (pg_dump | psql, cp -a)"),
                       ("live", "appliance, live source"), ("idle", "appliance, idle source")):
        print(f"  {label:32s} {median[way]:6.2f} s")
    print(f"  naive / live  {median['naive'] / median['live']:.2f}x   (target >= 1.7x)")
    print(f"  naive / idle  {median['naive'] / median['idle']:.2f}x   (target >= 5x)")


if __name__ == "__main__":
    main()
