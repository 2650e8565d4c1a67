"""bench/backup.py in its smoke mode: a small database and filestore of its own, a
scratch state database and repository, one round.

It checks the bench still runs against the real restic and PostgreSQL and ends with the
three lines a reader (or a script) takes its figures from; the figures are never asserted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import psycopg
import pytest

from tests.host import ROOT, STATE_DIR, admin_conninfo, db_password

RESULT_LINES = [re.compile(r"first backup: \d+\.\d\dx"),
                re.compile(r"second backup added: \d+\.\d\d%"),
                re.compile(r"restore: \d+\.\d\dx")]


@pytest.mark.slow  # the bench in a process of its own
@pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
def test_the_backup_bench_smoke_run_completes_and_ends_with_its_three_lines(tmp_path):
    db_password()  # skips where no state database was set up
    config = tmp_path / "appliance.toml"
    config.write_text('[database]\ndsn = "host=127.0.0.1 dbname=appliance user=appliance"\n'
                      f'password_file = "{STATE_DIR / "db-password"}"\n')
    with subprocess.Popen([sys.executable, str(ROOT / "bench" / "backup.py"), "--smoke",
                           "--config", str(config)], cwd=tmp_path, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert len(lines) >= 3, out
    for pattern, line in zip(RESULT_LINES, lines[-3:]):
        assert pattern.fullmatch(line), out
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:  # nothing left behind
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s "
                            "OR datname LIKE %s", (f"%\\_smoke\\_{run.pid}%",
                                                   f"appliance\\_bench\\_backup\\_{run.pid}")
                            ).fetchall()
    assert left == []
