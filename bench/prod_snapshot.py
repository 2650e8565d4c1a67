"""The pre-update snapshot of production against a bare CREATE DATABASE ... TEMPLATE.

appliance: clone_database (sessions closed, FILE_COPY, connect rights) + hard-link copy of
the filestore, as a full deploy takes it; baseline: a bare `CREATE DATABASE ... TEMPLATE
... STRATEGY FILE_COPY` of the same database. Target: at most 1.1x.

    .venv/bin/python bench/prod_snapshot.py [--db-mb 1024] [--files-mb 2048] [--rounds 5]
"""

from __future__ import annotations

import statistics

from copydata import (ROLE, SOURCE, arguments, ensure_database, ensure_filestore, postgres,
                      timed)

from appliance.runtime import filestore

TARGET = "appl_bench_snapshot"


def bare(pg) -> None:
    with pg._admin() as conn:
        conn.execute(f'CREATE DATABASE "{TARGET}" TEMPLATE "{SOURCE}" STRATEGY FILE_COPY')


def main() -> None:
    args = arguments(__doc__)
    pg = postgres()
    ensure_database(pg, args.db_mb)
    files = ensure_filestore(args.data / "filestore", args.files_mb)
    saved = args.data / "snapshot"
    appliance, baseline = [], []
    for _ in range(max(args.rounds, 3)):
        pg.drop_database(TARGET)
        baseline.append(timed(bare, pg))
        pg.drop_database(TARGET)
        filestore.remove_tree(saved)
        seconds = timed(pg.clone_database, SOURCE, TARGET, ROLE)
        appliance.append(seconds + timed(filestore.hardlink_copy, files, saved))
    pg.drop_database(TARGET)
    filestore.remove_tree(saved)
    a, b = statistics.median(appliance), statistics.median(baseline)
    print(f"pre-update snapshot of a {pg.database_size(SOURCE) // 2**20} MB database and its "
          f"filestore, median of {len(appliance)}:")
    print(f"  appliance (database + filestore)   {a:6.2f} s")
    print(f"  bare CREATE DATABASE ... FILE_COPY {b:6.2f} s")
    print(f"  ratio {a / b:.2f}x   (target <= 1.1x)")


if __name__ == "__main__":
    main()
