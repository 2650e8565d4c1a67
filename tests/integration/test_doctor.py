"""`appliance doctor` against the real PostgreSQL and Docker engine: each check says ok, or
what is wrong and the command that fixes it; exit code 1 when something fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appliance import config as config_mod
from appliance.store import db as store_db
from tests.host import ROOT, create_scratch_database, drop_scratch_database
from tests.integration.harness import free_port, write_config

pytestmark = pytest.mark.docker


@pytest.fixture
def state(tmp_path):
    """A config for a migrated scratch state database."""
    name = f"appliance_it_doctor_{os.getpid()}"
    create_scratch_database(name)
    path = write_config(tmp_path, name, free_port())
    database = store_db.Database(config_mod.load(path, env={}).database, max_size=1).open()
    store_db.migrate(database)
    database.close()
    yield path
    drop_scratch_database(name)


def doctor(config_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(config_path),
                           "doctor"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def line(output: str, name: str) -> str:
    return next(text for text in output.splitlines() if f" {name}: " in text)


def test_a_sound_install_has_no_failing_check(state):
    result = doctor(state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert line(result.stdout, "state database").startswith("ok    state database: PostgreSQL")
    assert "migration" not in line(result.stdout, "state database")
    assert line(result.stdout, "docker engine").startswith("ok    docker engine: Docker ")
    assert line(result.stdout, "base image").startswith("ok")
    assert line(result.stdout, "disk").startswith("ok")
    assert "FAIL" not in result.stdout


def test_a_wrong_database_password_fails_and_names_the_command_that_sets_it(state, tmp_path):
    (tmp_path / "wrong-password").write_text("not-the-password\n")
    result = doctor(state, APPLIANCE_DATABASE_PASSWORD_FILE=str(tmp_path / "wrong-password"))
    assert result.returncode == 1
    failure = line(result.stdout, "state database")
    assert failure.startswith("FAIL  state database: cannot connect")
    assert "password authentication failed" in failure
    assert "fix: as root: dpkg-reconfigure odoo-appliance" in result.stdout


def test_a_missing_base_image_fails_and_names_the_command_that_builds_it(state):
    result = doctor(state, APPLIANCE_RUNTIME_BASE_IMAGE="appliance/no-such-base:never")
    assert result.returncode == 1
    assert line(result.stdout, "base image").startswith(
        "FAIL  base image: appliance/no-such-base:never is missing")
    assert f"appliance.runtime.images ensure-base --config {state}" in result.stdout


def test_an_unreachable_docker_engine_fails_and_says_to_start_it(state):
    result = doctor(state, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert line(result.stdout, "docker engine").startswith("FAIL  docker engine: no answer")
    assert "fix: start it: systemctl start docker" in result.stdout
    assert " base image: " not in result.stdout  # nothing to ask without an engine


def test_the_ssh_check_says_what_a_missing_drop_in_costs_and_the_command_that_writes_it(
        tmp_path):
    from appliance import doctor
    cfg = config_mod.Config()
    sshd = tmp_path / "sshd"
    assert doctor.ssh_check(cfg, sshd=str(sshd)).status == "ok"  # no sshd: SSH is off
    sshd.write_text("")
    missing = doctor.ssh_check(cfg, sshd=str(sshd), dropin=tmp_path / "odoo-appliance.conf")
    assert missing.status == "warn" and missing.fix == "appliance ssh-install"
    from appliance.ssh import sshd_config
    (tmp_path / "odoo-appliance.conf").write_text(
        sshd_config.dropin(cfg.ssh.user, sshd_config.WRAPPER))
    found = doctor.ssh_check(cfg, sshd=str(sshd), dropin=tmp_path / "odoo-appliance.conf")
    assert found.status == "ok", found
