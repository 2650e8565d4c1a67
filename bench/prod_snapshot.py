"""The pre-update snapshot of production against a bare CREATE DATABASE ... TEMPLATE.

appliance: what a full deploy takes once the server is stopped: clone_database (sessions
closed, FILE_COPY, connect rights) + hard-linked copy of the filestore. Baseline: a bare
`CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY` of the same database, nothing else.
The two alternate which goes first. Target: at most 1.1x.

    (cd bench && ../.venv/bin/python prod_snapshot.py [--db-mb 1024] [--files-mb 2048])
"""

from __future__ import annotations

import statistics

from copydata import (ROLE, SOURCE, arguments, ensure_database, ensure_filestore, postgres,
                      sync, timed)

from appliance.runtime import filestore

TARGET = "appl_bench_snapshot"


def bare(pg, files, saved) -> None:
    with pg._admin() as conn:
        conn.execute(f'CREATE DATABASE "{TARGET}" TEMPLATE "{SOURCE}" STRATEGY FILE_COPY')


def appliance(pg, files, saved) -> None:
    pg.clone_database(SOURCE, TARGET, ROLE)
    filestore.hardlink_copy(files, saved)


def main() -> None:
    args = arguments(__doc__, rounds=7)
    pg = postgres()
    ensure_database(pg, args.db_mb)
    files = ensure_filestore(args.data / "filestore", args.files_mb)
    saved = args.data / "snapshot"
    results = {appliance: [], bare: []}
    for round_ in range(args.rounds):
        for way in (appliance, bare) if round_ % 2 else (bare, appliance):
            pg.drop_database(TARGET)
            filestore.remove_tree(saved)
            sync()
            results[way].append(timed(way, pg, files, saved))
    pg.drop_database(TARGET)
    filestore.remove_tree(saved)
    a, b = statistics.median(results[appliance]), statistics.median(results[bare])
    print(f"pre-update snapshot of a {pg.database_size(SOURCE) // 2**20} MB database and a "
          f"{filestore.tree_size(files) // 2**20} MB filestore, median of {args.rounds}:")
    print(f"  appliance (database + filestore)    {a:6.2f} s")
    print(f"  bare CREATE DATABASE ... FILE_COPY  {b:6.2f} s")
    print(f"  appliance / bare  {a / b:.2f}x   (target <= 1.1x)")


if __name__ == "__main__":
    main()
