"""Shared fixtures: a scratch state database, a test config, the stand-in Odoo, and the
fixed people of permission tests (as healthchecks' BaseTestCase has them): `owner` (an
admin of project `acme`), `member` (a developer of it), `outsider` (no role in it) and
`admin` (an appliance administrator), with `make_build` and a Flask client per person.

Paths and scratch databases are in tests/host.py (re-exported here for older imports);
helpers of the web tests in tests/helpers_web.py. A run drops at its end every scratch
database it left (a failed fixture or test included), and at its start those of runs
whose process is gone.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.store import builds as store_builds
from appliance.store import db as store_db
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.web.app import create_app
from tests.helpers_web import PASSWORD, login
from tests.host import (ADDONS, ROOT, STATE_DIR, STUB_ODOO, TEST_PACKAGES,  # noqa: F401
                        admin_conninfo, create_scratch_database, db_password,
                        drop_scratch_database, sweep_scratch_databases)

log = logging.getLogger(__name__)

KEEP_TABLES = {"schema_migrations", "appliance_instance"}
# Werkzeug's default password hash (scrypt) costs about 0.15 s of CPU to make or check:
# most of the time of the web tests, which make and sign in several people each.
CHEAP_HASH = "pbkdf2:sha256:1000"


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


def pytest_sessionstart(session):
    stale = sweep_scratch_databases(mine=False)
    if stale:
        log.warning("dropped scratch databases of runs that are gone: %s", ", ".join(stale))


def pytest_sessionfinish(session, exitstatus):
    left = sweep_scratch_databases(mine=True)
    if left:
        log.warning("dropped scratch databases this run left behind: %s", ", ".join(left))


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes():
    """Users made in the test process get a cheap hash (a check reads the method from
    the hash); what the hash's cost protects is no test's subject. A daemon a test
    starts in a process of its own keeps the default."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_users, "generate_password_hash", functools.partial(
            store_users.generate_password_hash, method=CHEAP_HASH))
        yield


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
    cfg.runtime.bytecode_dir = str(STATE_DIR / "bytecode")
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
    try:
        store_db.migrate(database)
        with database.transaction() as conn:
            tables = [row["tablename"] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            tables = [t for t in tables if t not in KEEP_TABLES]
            if tables:
                conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                             + " RESTART IDENTITY CASCADE")
        yield database
    finally:
        database.close()


# The people of permission tests, their project, its builds, a signed-in client each

@pytest.fixture
def people(db):
    """owner (admin of `acme`), member (developer of it), outsider (nothing), admin (of
    the appliance), all with PASSWORD, and the project `acme`."""
    with db.transaction() as conn:
        found = {name: store_users.create_user(conn, name, PASSWORD, is_admin=name == "admin")
                 for name in ("owner", "member", "outsider", "admin")}
        project = store_projects.create_project(conn, "acme", "18.0", "appl_")
        store_users.add_member(conn, project["id"], found["owner"]["id"], "admin")
        store_users.add_member(conn, project["id"], found["member"]["id"], "developer")
    found["project"] = project
    return found


@pytest.fixture
def make_build(db, people):
    """A build of `acme` on a branch (created on first use), with any column overridden."""
    def make(branch="main", commit="0123456789abcdef0123456789abcdef01234567",
             message="Add the shop", author="Ada <ada@example.com>", **overrides):
        with db.transaction() as conn:
            project = people["project"]
            branch_row, _ = store_projects.ensure_branch(conn, project, branch)
            build = store_builds.enqueue(conn, project=project, branch=branch_row, commit=commit,
                                         message=message, author=author)
            state = overrides.pop("state", None)
            if state:  # a made-up row: put in its state, not moved there step by step
                conn.execute("UPDATE builds SET state = %s WHERE id = %s", (state, build["id"]))
            if overrides:
                store_builds.update(conn, build["id"], **overrides)
            return store_builds.get_build(conn, build["id"])
    return make


@pytest.fixture
def app(config, db):
    """The web app on the test's state database; errors raise in the test (TESTING)."""
    app = create_app(config, db)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client_as(app, people):
    """A Flask test client signed in as one of `people`."""
    def make(name: str):
        client = app.test_client()
        response = login(client, name)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client
    return make
