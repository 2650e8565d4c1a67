"""Scratch databases the benches make and drop, through the state database's login."""

from __future__ import annotations

import contextlib
import os

import psycopg
from psycopg import sql

from appliance import config as config_mod
from appliance.store import db as store_db


def scratch_database(cfg: config_mod.Config, name: str, create: bool) -> None:
    """Drop the database `name` (with its sessions), then make it again when `create`."""
    with psycopg.connect(store_db.conninfo(cfg.database), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def scratch_state(cfg: config_mod.Config, label: str):
    """A state database of the bench's own, migrated and open, with `cfg` pointed at it
    (and a secret key of its own) for the block; dropped, and `cfg` pointed back, after.
    The pool is sized as the daemon sizes its own."""
    name = f"appliance_bench_{label}_{os.getpid()}"
    scratch_database(cfg, name, create=True)
    admin_dsn, secret_key = cfg.database.dsn, cfg.server.secret_key
    cfg.database.dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    cfg.server.secret_key = f"bench-{label}-secret-key"
    db = None
    try:
        db = store_db.Database(cfg.database,
                               max_size=cfg.server.threads + cfg.workers.builds + 4).open()
        store_db.migrate(db)
        yield db
    finally:
        if db:
            db.close()
        cfg.database.dsn, cfg.server.secret_key = admin_dsn, secret_key
        scratch_database(cfg, name, create=False)
