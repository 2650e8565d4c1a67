"""The pre-update snapshot of production against a bare CREATE DATABASE ... TEMPLATE.

appliance: what a full deploy takes once the server is stopped: clone_database (sessions
closed, FILE_COPY, connect rights) + hard-linked copy of the filestore. Baseline: a bare
`CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY` of the same database, nothing else.
The two alternate which goes first. Target: at most 1.1x.

    (cd bench && ../.venv/bin/python prod_snapshot.py [--db-mb 1024] [--files-mb 2048] [--smoke])
"""

from __future__ import annotations

import statistics

from copydata import ROLE, Data, arguments, bench_data, sync, timed

from appliance.runtime import filestore

TARGET = "appl_bench_snapshot"


def bare(data: Data) -> None:
    with data.pg._admin() as conn:
        conn.execute(f'CREATE DATABASE "{data.target}" TEMPLATE "{data.source}" '
                     "STRATEGY FILE_COPY")


def appliance(data: Data) -> None:
    data.pg.clone_database(data.source, data.target, ROLE)
    filestore.hardlink_copy(data.files, data.copy)


def main() -> None:
    args = arguments(__doc__, rounds=7)
    results = {appliance: [], bare: []}
    with bench_data(args, TARGET, "snapshot") as data:
        for round_ in range(args.rounds):
            for way in (appliance, bare) if round_ % 2 else (bare, appliance):
                data.clear()
                sync()
                results[way].append(timed(way, data))
        size, files = data.pg.database_size(data.source), filestore.tree_size(data.files)
    a, b = statistics.median(results[appliance]), statistics.median(results[bare])
    print(f"pre-update snapshot of a {size // 2**20} MB database and a "
          f"{files // 2**20} MB filestore, median of {args.rounds}:")
    print(f"  appliance (database + filestore)    {a:6.2f} s")
    print(f"  bare CREATE DATABASE ... FILE_COPY  {b:6.2f} s")
    print(f"  appliance / bare  {a / b:.2f}x   (target <= 1.1x)")


if __name__ == "__main__":
    main()
