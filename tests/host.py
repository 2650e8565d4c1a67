"""The host the tests run against: the checkout's paths, the state database's password,
and the scratch databases tests make on the host's PostgreSQL.

The host must have been set up by `scripts/setup-host.sh var` (what `make test` does):
PostgreSQL with the appliance's role, whose password is in var/db-password.

Scratch databases are named `appliance_test_<pid>` and `appliance_it_<name>_<pid>`, the
pid of the pytest run that made them; the daemons under test name their projects' roles
and build databases `appl__t<pid>_...` (`run_prefix`: a real appliance's, `appl_` and a
project name, which starts with a letter, never begins so), so that two runs on one host
never share a role. `sweep_scratch_databases` finds a run's own at its end, and those of
runs whose process is gone (killed before they could clean up).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import psycopg
import pytest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("APPLIANCE_TEST_STATE", ROOT / "var"))
STUB_ODOO = ROOT / "tests" / "odoo_stub"
ADDONS = ROOT / "tests" / "addons"
# Enough to run the stand-in: small, so a fresh machine builds the image in about a minute.
TEST_PACKAGES = ["python3", "python3-psycopg2", "python3-pip", "ca-certificates"]
# The names of scratch state databases (the pid of the run that made them ends the name),
# and of the roles and build databases of the daemons under test (it follows `appl__t`).
SCRATCH_NAME = re.compile(r"appliance_(?:test|it_\w+?)_(\d+)|appl__t(\d+)_\w+")


def run_prefix(pid: int | None = None) -> str:
    """The prefix of the project roles and build databases of this run's daemons."""
    return f"appl__t{pid or os.getpid()}_"


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


def scratch_objects(catalog: str) -> dict[str, int]:
    """Every scratch database (catalog "database") or role ("role") on the host's
    PostgreSQL, with the pid its name carries."""
    query = {"database": "SELECT datname FROM pg_database",
             "role": "SELECT rolname FROM pg_roles"}[catalog]
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        names = [row[0] for row in conn.execute(query)]
    found = {name: SCRATCH_NAME.fullmatch(name) for name in names}
    return {name: int(match.group(1) or match.group(2))
            for name, match in found.items() if match}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_scratch_databases(mine: bool, pid: int | None = None) -> list[str]:
    """Drop the scratch databases, then roles, of this run (mine=True: at its end,
    connections closed by force), or of runs whose process is gone (mine=False: only
    those nobody is connected to, so a database still in use is never taken away).
    Returns the names dropped; does nothing where no state database was set up."""
    pid = pid or os.getpid()
    if not (STATE_DIR / "db-password").exists():
        return []
    dropped = []
    try:
        for catalog in ("database", "role"):
            for name, owner in scratch_objects(catalog).items():
                if mine != (owner == pid) or (not mine and pid_alive(owner)):
                    continue
                if _drop(catalog, name, force=mine):
                    dropped.append(name)
    except psycopg.OperationalError as exc:  # no PostgreSQL here: nothing was made either
        log.warning("scratch databases not swept: %s", exc)
    return dropped


def _drop(catalog: str, name: str, force: bool) -> bool:
    what = f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else "")
    if catalog == "role":
        what = f'DROP ROLE IF EXISTS "{name}"'
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        try:
            conn.execute(what)
        except psycopg.Error as exc:
            log.warning("scratch %s %s kept: %s", catalog, name, exc)
            return False
    return True
