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

import pytest

from tests.conftest import ROOT, db_password

RESULT_LINES = [re.compile(r"first backup: \d+\.\d\dx"),
                re.compile(r"second backup added: \d+\.\d\d%"),
                re.compile(r"restore: \d+\.\d\dx")]


@pytest.mark.slow  # the bench in a process of its own
@pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
def test_the_backup_bench_smoke_run_completes_and_ends_with_its_three_lines(tmp_path):
    db_password()  # skips where no state database was set up
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "backup.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) >= 3, run.stdout
    for pattern, line in zip(RESULT_LINES, lines[-3:]):
        assert pattern.fullmatch(line), run.stdout
