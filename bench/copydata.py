"""Test data for the copy benchmarks: a database and a filestore of given sizes, made once
and kept (in --data, default /var/tmp/appliance-bench) so later runs start at once."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance.runtime.postgres import Postgres  # noqa: E402

ROLE = "appl_bench"
SOURCE = "appl_bench_source"


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default="/var/tmp/appliance-bench", type=Path)
    parser.add_argument("--db-mb", default=1024, type=int)
    parser.add_argument("--files-mb", default=2048, type=int)
    parser.add_argument("--rounds", default=3, type=int)
    return parser.parse_args()


def postgres() -> Postgres:
    cfg = config_mod.Config().database
    cfg.password = (ROOT / "var" / "db-password").read_text().strip()
    pg = Postgres(cfg)
    pg.ensure_role(ROLE, "bench-password")
    return pg


def ensure_database(pg: Postgres, megabytes: int) -> None:
    if pg.exists(SOURCE) and pg.database_size(SOURCE) >= megabytes * 2**20 * 0.9:
        return
    print(f"making a {megabytes} MB database (once)...", flush=True)
    pg.create_database(SOURCE, ROLE, replace=True)
    rows = megabytes * 2**20 // 330  # about 330 bytes a row with its index entry
    with pg._connect_to(SOURCE) as conn:
        conn.execute(f'SET ROLE "{ROLE}"')
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text, "
                     "email text, note text)")
        conn.execute("INSERT INTO res_partner (name, email, note) SELECT 'partner ' || g, "
                     "md5(g::text) || '@example.com', repeat(md5(g::text), 6) "
                     "FROM generate_series(1, %s) g", (rows,))
        conn.execute("CREATE INDEX res_partner_email ON res_partner (email)")
        conn.execute("VACUUM ANALYZE res_partner")


def ensure_filestore(folder: Path, megabytes: int) -> Path:
    marker = folder / f".complete-{megabytes}"
    if marker.exists():
        return folder
    print(f"making a {megabytes} MB filestore (once)...", flush=True)
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    written, n = 0, 0
    while written < megabytes * 2**20:
        size = (4096, 65536, 524288, 2 * 2**20)[n % 4]
        data = os.urandom(size)
        sha = hashlib.sha1(data).hexdigest()
        (folder / sha[:2]).mkdir(parents=True, exist_ok=True)
        (folder / sha[:2] / sha).write_bytes(data)
        written += size
        n += 1
    marker.write_text("")
    return folder


def timed(func, *args) -> float:
    started = time.monotonic()
    func(*args)
    return time.monotonic() - started


def sh(command: str, password: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True,
                   env={**os.environ, "PGPASSWORD": password}, stdout=subprocess.DEVNULL)
