"""scripts/setup-host.sh for several state folders on one host: one role, one password.

The appliance's PostgreSQL role belongs to the host, so a second checkout (or a test's
state folder) must get the same password, never a new one that locks the first out.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, db_password

SCRIPT = ROOT / "scripts" / "setup-host.sh"

pytestmark = [
    pytest.mark.docker,  # setup-host.sh starts dockerd and waits for it
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                       reason="setup-host.sh runs as root"),
]


def setup_host(state: Path, **env: str) -> str:
    result = subprocess.run(["bash", str(SCRIPT), str(state)], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def logs_in(user: str, password: str) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", dbname="postgres", user=user,
                             password=password, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone()[0] == 1
    except psycopg.OperationalError:
        return False


def password_in(state: Path) -> str:
    path = state / "db-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


def as_postgres(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c", sql],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_role(tmp_path):
    """A role and database of this test's own, its password file under tmp_path."""
    name = f"appl_setup_test_{os.getpid()}"
    env = {"APPLIANCE_DB_USER": name, "APPLIANCE_DB_NAME": name,
           "APPLIANCE_HOST_PASSWORD_FILE": str(tmp_path / "host" / "db-password")}
    yield name, env
    as_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    as_postgres(f'DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \'{name}\') '
                f'THEN REVOKE CONNECT ON DATABASE postgres, template1 FROM "{name}"; '
                f'END IF; END $$')
    as_postgres(f'DROP ROLE IF EXISTS "{name}"')


def test_setting_up_a_second_state_folder_keeps_the_first_ones_password(tmp_path):
    first = db_password()
    setup_host(tmp_path / "second")
    assert password_in(tmp_path / "second") == first
    assert logs_in("appliance", first)


def test_every_state_folder_gets_the_hosts_one_password(tmp_path, own_role):
    user, env = own_role
    host_file = Path(env["APPLIANCE_HOST_PASSWORD_FILE"])
    setup_host(tmp_path / "a", **env)
    password = password_in(tmp_path / "a")
    setup_host(tmp_path / "b", **env)
    assert password_in(tmp_path / "b") == password
    assert logs_in(user, password)
    assert host_file.read_text().strip() == password
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o600 and host_file.stat().st_uid == 0


def test_a_role_set_up_before_the_host_file_existed_keeps_its_password(tmp_path, own_role):
    user, env = own_role
    host_file = Path(env["APPLIANCE_HOST_PASSWORD_FILE"])
    setup_host(tmp_path / "a", **env)
    password = password_in(tmp_path / "a")
    host_file.unlink()

    out = setup_host(tmp_path / "a", **env)
    assert "kept the password" in out
    assert host_file.read_text().strip() == password
    setup_host(tmp_path / "b", **env)
    assert password_in(tmp_path / "b") == password and logs_in(user, password)


def test_when_no_known_password_logs_in_a_new_one_reaches_every_folder_rerun(tmp_path,
                                                                            own_role):
    user, env = own_role
    host_file = Path(env["APPLIANCE_HOST_PASSWORD_FILE"])
    setup_host(tmp_path / "a", **env)
    old = password_in(tmp_path / "a")
    host_file.unlink()

    out = setup_host(tmp_path / "b", **env)
    new = password_in(tmp_path / "b")
    assert "warning: no password" in out and new != old
    assert logs_in(user, new) and not logs_in(user, old)
    setup_host(tmp_path / "a", **env)
    assert password_in(tmp_path / "a") == new
