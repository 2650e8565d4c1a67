"""Shared fixtures: a scratch state database, a test config, the stand-in Odoo.

The host must have been set up by `scripts/setup-host.sh var` (what `make test` does):
PostgreSQL with the appliance's role, whose password is in var/db-password.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from appliance import config as config_mod
from appliance.store import db as store_db

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("APPLIANCE_TEST_STATE", ROOT / "var"))
STUB_ODOO = ROOT / "tests" / "odoo_stub"
ADDONS = ROOT / "tests" / "addons"
# Enough to run the stand-in: small, so a fresh machine builds the image in about a minute.
TEST_PACKAGES = ["python3", "python3-psycopg2", "python3-pip", "ca-certificates"]
KEEP_TABLES = {"schema_migrations", "appliance_instance"}


def pytest_report_header(config):
    lines = []
    for cmd in (["psql", "--version"], ["docker", "version", "--format",
                                         "docker engine {{.Server.Version}}"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            lines.append(out.stdout.strip() or out.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            lines.append(f"{cmd[0]}: {exc}")
    return lines


def db_password() -> str:
    path = STATE_DIR / "db-password"
    if not path.exists():
        pytest.skip(f"no state database set up ({path} missing): run `make test`")
    return path.read_text().strip()


def admin_conninfo(dbname: str = "appliance") -> str:
    return psycopg.conninfo.make_conninfo(host="127.0.0.1", dbname=dbname, user="appliance",
                                          password=db_password())


def create_scratch_database(name: str) -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_scratch_database(name: str) -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.errors.InsufficientPrivilege:
            rows = conn.execute("SELECT usename, application_name, state, query FROM "
                                "pg_stat_activity WHERE datname = %s", (name,)).fetchall()
            raise AssertionError(f"cannot drop {name}: still connected: {rows}") from None


def make_config(tmp_path: Path, dbname: str, **sections) -> config_mod.Config:
    """A Config for tests: data under tmp_path, state in `dbname`, the stand-in Odoo."""
    cfg = config_mod.Config()
    cfg.paths.data_dir = tmp_path / "data"
    cfg.database.dsn = f"host=127.0.0.1 dbname={dbname} user=appliance"
    cfg.database.password = db_password()
    cfg.runtime.debian_packages = list(TEST_PACKAGES)
    ca_bundle = os.environ.get("APPLIANCE_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    cfg.runtime.ca_bundle = ca_bundle if Path(ca_bundle).exists() else ""
    cfg.runtime.memory = "1g"
    cfg.odoo.versions = {"18.0": config_mod.OdooVersion(source=str(STUB_ODOO), ref="")}
    cfg.server.secret_key = "test-secret-key"
    cfg.workers.poll_seconds = 0.5
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


@pytest.fixture(scope="session")
def state_dbname():
    name = f"appliance_test_{os.getpid()}"
    create_scratch_database(name)
    yield name
    drop_scratch_database(name)


@pytest.fixture
def config(tmp_path, state_dbname):
    return make_config(tmp_path, state_dbname)


@pytest.fixture
def db(config):
    """The migrated state database, emptied before each test."""
    database = store_db.Database(config.database, max_size=4).open()
    store_db.migrate(database)
    with database.transaction() as conn:
        tables = [row["tablename"] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        tables = [t for t in tables if t not in KEEP_TABLES]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                         + " RESTART IDENTITY CASCADE")
    yield database
    database.close()
