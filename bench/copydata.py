"""Test data for the copy benchmarks: a database and a filestore of given sizes, made once
and kept (in --data, default /var/tmp/appliance-bench) so later runs start at once. Shared
by staging_clone.py and prod_snapshot.py.

With --smoke a bench runs one round on a small database and filestore of its own, made
for the run and removed after it (the kept ones are not touched): it checks that the
bench still works; its figures mean nothing."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance.runtime import filestore  # noqa: E402
from appliance.runtime.postgres import Postgres  # noqa: E402

ROLE = "appl_bench"
# The bench role's password (a scratch role on this machine's cluster).
ROLE_PASSWORD = "bench-password"
SOURCE = "appl_bench_source"
# Rows added per round while the database grows to its size: about 60 MB a round (a
# small database grows by about 1/16 of its size a round).
CHUNK_ROWS = 40_000
# The size of the database and of the filestore in a smoke run.
SMOKE_MB = 16

# Odoo-like tables: partners (short text, two indexes), messages (longer text), and
# attachments kept in the database (incompressible bytea).
SCHEMA = """
CREATE TABLE res_partner (id serial PRIMARY KEY, name text, email text, street text,
                          comment text, write_date timestamp);
CREATE INDEX res_partner_email ON res_partner (email);
CREATE INDEX res_partner_name ON res_partner (name);
CREATE TABLE mail_message (id serial PRIMARY KEY, model text, res_id int, body text,
                           date timestamp);
CREATE INDEX mail_message_res ON mail_message (model, res_id);
CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, checksum text, db_datas bytea);
CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name text, smtp_host text, smtp_port int,
                             smtp_encryption text, smtp_authentication text, active bool);
CREATE TABLE ir_cron (id serial PRIMARY KEY, name text, active bool);
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module text, name text, model text,
                            res_id int);
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key text UNIQUE, value text);
INSERT INTO ir_mail_server (name, smtp_host, smtp_port, smtp_encryption, active)
  VALUES ('production relay', 'smtp.example.com', 587, 'starttls', true);
INSERT INTO ir_cron (name, active) SELECT 'cron ' || g, true FROM generate_series(1, 40) g;
INSERT INTO ir_model_data (module, name, model, res_id)
  VALUES ('base', 'autovacuum_job', 'ir.cron', 1);
"""
# What `odoo-bin neutralize` runs for base, from the stand-in Odoo of the tests (Odoo 18's).
NEUTRALIZE_SQL = ROOT / "tests" / "odoo_stub" / "odoo" / "addons" / "base" / "data" / \
    "neutralize.sql"
FILL = """
INSERT INTO res_partner (name, email, street, comment, write_date)
  SELECT 'Partner ' || md5(random()::text), md5(random()::text) || '@example.com',
         (random() * 999)::int || ' ' || md5(random()::text) || ' street',
         repeat(md5(random()::text), 4), now() - random() * interval '900 days'
  FROM generate_series(1, {rows});
INSERT INTO mail_message (model, res_id, body, date)
  SELECT 'res.partner', (random() * {rows})::int,
         '<p>' || repeat(md5(random()::text) || ' ', 12) || '</p>',
         now() - random() * interval '900 days'
  FROM generate_series(1, {rows});
INSERT INTO ir_attachment (name, checksum, db_datas)
  SELECT 'file' || g || '.bin', md5(g::text),
         (SELECT string_agg(sha256(int8send(g * 64 + i + {seed})), ''::bytea)
          FROM generate_series(1, 48) i)
  FROM generate_series(1, {rows} / 8) g;
"""


def arguments(description: str, rounds: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/appliance-bench"),
                        help="where the filestore and the copies are kept between runs "
                             "(on disk: a tmpfs would flatter cp -a)")
    parser.add_argument("--db-mb", default=1024, type=int, help="database size (1 GB)")
    parser.add_argument("--files-mb", default=2048, type=int, help="filestore size (2 GB)")
    parser.add_argument("--rounds", default=rounds, type=int)
    parser.add_argument("--config", type=Path,
                        default=Path(os.environ.get("APPLIANCE_CONFIG",
                                                    ROOT / "var" / "appliance.toml")),
                        help="how to reach PostgreSQL (default: $APPLIANCE_CONFIG, else "
                             "var/appliance.toml as `make test` writes it)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"one round on a {SMOKE_MB} MB database and filestore made for "
                             "the run: checks the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.db_mb, args.files_mb = 1, SMOKE_MB, SMOKE_MB
    if args.rounds < 1 or args.db_mb < 1 or args.files_mb < 1:
        parser.error("--rounds, --db-mb and --files-mb must be at least 1")
    return args


@dataclass(frozen=True)
class Data:
    """What a copy bench copies and where its copies go."""

    pg: Postgres
    source: str     # the source database
    target: str     # the database copied to
    files: Path     # the source filestore
    copy: Path      # the filestore copied to

    def clear(self) -> None:
        """Remove the copies (the source stays)."""
        self.pg.drop_database(self.target)
        filestore.remove_tree(self.copy)


@contextlib.contextmanager
def bench_data(args: argparse.Namespace, target: str, copy: str):
    """The source (the kept one, made on first use; for --smoke, a small one of this
    run's own, removed at the end) and where to copy it: database `target`, folder
    `copy`. The copies are removed at the end."""
    pg = postgres(args.config)
    if not args.smoke:
        data = Data(pg, SOURCE, target, args.data / "filestore", args.data / copy)
        ensure_database(pg, data.source, args.db_mb)
        ensure_filestore(data.files, args.files_mb)
        try:
            yield data
        finally:
            data.clear()
        return
    suffix = f"_smoke_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="appliance-bench-smoke-") as folder:
        data = Data(pg, SOURCE + suffix, target + suffix, Path(folder) / "filestore",
                    Path(folder) / copy)
        try:
            ensure_database(pg, data.source, args.db_mb)
            ensure_filestore(data.files, args.files_mb)
            yield data
        finally:
            data.clear()
            pg.drop_database(data.source)


def postgres(config: Path) -> Postgres:
    """The appliance's Postgres adapter, as the config says; its role must be able to
    create roles and databases."""
    pg = Postgres(config_mod.load(config).database)
    pg.ensure_role(ROLE, ROLE_PASSWORD)
    return pg


def ensure_database(pg: Postgres, name: str, megabytes: int) -> None:
    """The source database, grown to about `megabytes` and vacuumed; kept when present."""
    if pg.exists(name) and abs(pg.database_size(name) / 2**20 - megabytes) < 0.1 * megabytes:
        with pg.owner_connection(name) as conn:
            if conn.execute("SELECT to_regclass('ir_cron')").fetchone()[0]:
                return
    print(f"making a {megabytes} MB database...", flush=True)
    pg.drop_database(name)
    pg.create_database(name, ROLE)
    rows = min(CHUNK_ROWS, max(100, megabytes * CHUNK_ROWS // 1024))
    with pg.owner_connection(name) as conn:
        conn.execute(SCHEMA)
        seed = 0
        while pg.database_size(name) < megabytes * 2**20:
            conn.execute(FILL.format(rows=rows, seed=seed))  # ints only
            seed += rows
        conn.execute("VACUUM ANALYZE")


def ensure_filestore(folder: Path, megabytes: int) -> Path:
    """An Odoo-like filestore: <xx>/<sha1> files of 4 KB to 2 MB (log-uniform, so most
    are small), random content; kept when one of this size is present."""
    marker = folder / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == {"megabytes": megabytes}:
        return folder
    print(f"making a {megabytes} MB filestore...", flush=True)
    filestore.remove_tree(folder)
    rng, written = random.Random(megabytes), 0
    while written < megabytes * 2**20:
        data = rng.randbytes(int(4096 * 512 ** rng.random()))
        sha = hashlib.sha1(data).hexdigest()
        (folder / sha[:2]).mkdir(parents=True, exist_ok=True)
        (folder / sha[:2] / sha).write_bytes(data)
        written += len(data)
    marker.write_text(json.dumps({"megabytes": megabytes}))
    sync()
    return folder


def neutralize(pg: Postgres, database: str) -> None:
    """The SQL part of neutralizing a copy: mail servers and crons off."""
    with pg.owner_connection(database) as conn:
        conn.execute(NEUTRALIZE_SQL.read_text())


@contextlib.contextmanager
def in_use(pg: Postgres, source: str):
    """The source as production leaves it while serving: a session of the project role
    with a write not yet committed."""
    with pg.owner_connection(source) as conn:
        conn.autocommit = False
        conn.execute("UPDATE res_partner SET comment = 'being edited' WHERE id = 1")
        yield
        conn.rollback()


def timed(func, *args) -> float:
    started = time.monotonic()
    func(*args)
    return time.monotonic() - started


def sync() -> None:
    """Write dirty pages out between measurements, so one way's writes are not paid by
    the next."""
    os.sync()


def shell(command: str, password: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True,
                   env={**os.environ, "PGPASSWORD": password}, stdout=subprocess.DEVNULL)
