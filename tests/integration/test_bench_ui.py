"""bench/ui.py in its smoke mode: a few rows, one round, on a scratch database of its own.

It checks the bench still runs against the real app and prints the line a reader (or a
script) takes its figures from; what the figures are is never asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.host import ROOT, STATE_DIR, db_password

pytestmark = pytest.mark.slow  # the bench in a process of its own

RESULT_LINE = re.compile(r"project page p95: \d+ ms, \d+ KB")


def test_the_ui_bench_smoke_run_completes_and_ends_with_its_result_line(tmp_path):
    db_password()  # skips where no state database was set up
    config = tmp_path / "appliance.toml"
    config.write_text('[database]\ndsn = "host=127.0.0.1 dbname=appliance user=appliance"\n'
                      f'password_file = "{STATE_DIR / "db-password"}"\n')
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "ui.py"), "--smoke",
                          "--config", str(config)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert RESULT_LINE.fullmatch(lines[-1]), run.stdout
    # Every measure ran: an unchanged poll is answered without a list.
    assert re.search(r"poll, nothing changed .*\(204\)$", run.stdout, re.M), run.stdout
    assert re.search(r"builds API, first page .*\(200\)$", run.stdout, re.M), run.stdout
