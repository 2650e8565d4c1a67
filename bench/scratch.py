"""Scratch databases the benches make and drop, through the state database's login."""

from __future__ import annotations

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
