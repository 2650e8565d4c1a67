"""A test run leaves no scratch database behind, even when its fixtures fail: a pytest run
in a subprocess, with this suite's conftest as a plugin, on the host's PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg

from tests.host import ROOT, admin_conninfo, run_prefix, scratch_objects

FAILING = '''
import os

import pytest

from tests.host import scratch_objects
from tests.integration.harness import Appliance


@pytest.fixture
def broken(tmp_path, db):
    Appliance(tmp_path, "broken")  # a state database, never closed
    raise RuntimeError("the fixture fails before any clean-up is set up")


def test_with_a_broken_fixture(broken):
    pass


def test_that_fails(db):
    made = sorted(name for name, pid in scratch_objects("database").items()
                  if pid == os.getpid())
    assert False, f"CHILD PID {os.getpid()} MADE {','.join(made)} END"
'''


def run_pytest(folder) -> subprocess.CompletedProcess:
    """pytest on `folder` in a subprocess, with tests/conftest.py as a plugin."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(folder), str(folder)],
        capture_output=True, text=True, cwd=folder, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def create(sql: str) -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql)


def owned_by(pid: int) -> set[str]:
    return {name for catalog in ("database", "role")
            for name, owner in scratch_objects(catalog).items() if owner == pid}


def test_a_run_whose_fixture_and_test_fail_leaves_no_scratch_database(tmp_path):
    (tmp_path / "test_failing.py").write_text(FAILING)
    result = run_pytest(tmp_path)
    assert "1 failed" in result.stdout and "1 error" in result.stdout, result.stdout[-3000:]
    found = re.search(r"CHILD PID (\d+) MADE (\S*) END", result.stdout)
    child, made = int(found.group(1)), set(found.group(2).split(","))
    assert made == {f"appliance_test_{child}", f"appliance_it_broken_{child}"}
    assert owned_by(child) == set()


def test_a_run_drops_what_runs_that_are_gone_left_and_keeps_what_live_ones_use(tmp_path):
    gone = 4_000_000 + os.getpid() % 100_000  # past pid_max: no process has it
    create(f'CREATE DATABASE "appliance_it_gone_{gone}"')
    create(f'CREATE DATABASE "{run_prefix(gone)}shop_1"')
    create(f'CREATE ROLE "{run_prefix(gone)}shop"')
    create(f'CREATE DATABASE "appliance_it_alive_{os.getpid()}"')  # this run: alive
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    result = run_pytest(tmp_path)
    assert "1 passed" in result.stdout, result.stdout[-3000:]
    assert owned_by(gone) == set()
    assert f"appliance_it_alive_{os.getpid()}" in owned_by(os.getpid())
    create(f'DROP DATABASE "appliance_it_alive_{os.getpid()}"')
