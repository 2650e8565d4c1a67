"""The appliance's state database: a connection pool and numbered SQL migrations."""

from __future__ import annotations

import contextlib
import logging
import re
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from appliance.config import DatabaseConfig
from appliance.errors import SystemFailure

log = logging.getLogger(__name__)

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# A fixed key for pg_advisory_lock: two processes migrating at once take turns.
MIGRATION_LOCK = 0x0DD0A991


def conninfo(cfg: DatabaseConfig) -> str:
    info = cfg.dsn
    if cfg.password:
        info = psycopg.conninfo.make_conninfo(info, password=cfg.password)
    return info


class Database:
    """A small pool of connections to the state database, rows as dicts."""

    def __init__(self, cfg: DatabaseConfig, max_size: int = 10):
        self.cfg = cfg
        self.pool = ConnectionPool(conninfo(cfg), min_size=1, max_size=max_size, open=False,
                                   kwargs={"row_factory": dict_row, "autocommit": False})

    def open(self) -> "Database":
        try:
            self.pool.open(wait=True, timeout=10)
        except psycopg.OperationalError as exc:
            raise SystemFailure(f"cannot reach the state database: {exc}") from None
        except Exception as exc:  # psycopg_pool.PoolTimeout has no stable import path
            raise SystemFailure(f"cannot reach the state database ({self.cfg.dsn}): {exc}") from None
        return self

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def transaction(self):
        """A connection inside one transaction: committed on success, rolled back on error."""
        with self.pool.connection() as conn:
            yield conn

    def connect_listener(self) -> psycopg.Connection:
        """A dedicated autocommit connection for LISTEN (never from the pool)."""
        return psycopg.connect(conninfo(self.cfg), autocommit=True)


def migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("appliance.store.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def migrate(db: Database) -> list[str]:
    """Apply the migrations not applied yet, in order. Safe to re-run: returns what ran."""
    applied = []
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                            version integer PRIMARY KEY, name text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, script in migrations():
            if version in done:
                continue
            log.info("applying migration %s", name)
            conn.execute(script)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (version, name))
            applied.append(name)
        close_to_public(conn)
    return applied


def close_to_public(conn) -> None:
    """Only the appliance's own role may connect to its state database: project roles
    (whose passwords every build of a project holds) must never read it."""
    name = conn.execute("SELECT current_database()").fetchone()
    name = name[0] if isinstance(name, tuple) else name["current_database"]
    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                 .format(sql.Identifier(name)))
