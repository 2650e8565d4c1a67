"""The benches of bench/ in their smoke mode: one round on small data, each in a process
of its own as a reader runs it (bench/ui.py and bench/backup.py have tests of their own).

A bench nothing runs rots without anyone noticing: these check that each one still runs
against the code as it is now and prints the lines its figures are read from. What the
figures are is never asserted: one round on a shared machine measures nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.host import ROOT, STATE_DIR, admin_conninfo, db_password

pytestmark = pytest.mark.slow  # each bench in a process of its own: seconds to a minute

BENCH = ROOT / "bench"
SECONDS = r"\d+\.\d\d s"
RATIO = r"\d+\.\d\dx"
# A smoke run of the development build bench pushes twice and builds an image at most.
TIMEOUT = 900


def config_file(tmp_path: Path) -> Path:
    """A config that says how to reach the state database's PostgreSQL, and only that."""
    db_password()  # skips where no state database was set up
    path = tmp_path / "appliance.toml"
    path.write_text('[database]\ndsn = "host=127.0.0.1 dbname=appliance user=appliance"\n'
                    f'password_file = "{STATE_DIR / "db-password"}"\n')
    return path


def run_bench(tmp_path: Path, script: str, *args: str) -> tuple[str, int]:
    """Run bench/<script> with `args` from a folder of the test's; its output and pid.
    A bench that does not exit 0 fails the test with the end of what it said."""
    with subprocess.Popen([sys.executable, str(BENCH / script), *args], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            out, err = run.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            run.kill()
            out, err = run.communicate()
            pytest.fail(f"{script} still ran after {TIMEOUT} s:\n{out[-2000:]}\n{err[-3000:]}")
    assert run.returncode == 0, f"{script} exited {run.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    return out, run.pid


def assert_lines(out: str, *patterns: str) -> None:
    for pattern in patterns:
        assert re.search(pattern, out, re.M), f"no line matching {pattern!r} in:\n{out}"


def databases_named(pattern: str) -> list[str]:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))]


def test_the_staging_copy_bench_copies_small_data_once_and_prints_both_ratios(tmp_path):
    out, pid = run_bench(tmp_path, "staging_clone.py", "--smoke",
                         "--config", str(config_file(tmp_path)))
    assert_lines(out, r"^staging copy of a \d+ MB database and a \d+ MB filestore, "
                      r"median of 1:$",
                 rf"^  naive \(pg_dump \| psql, cp -a\) +{SECONDS} +{SECONDS} with sync$",
                 rf"^  naive / live +{RATIO} +{RATIO} with sync +\(target >= 1\.7x\)$",
                 rf"^  naive / idle +{RATIO} +{RATIO} with sync +\(target >= 5x\)$")
    assert databases_named(f"%\\_smoke\\_{pid}") == []


def test_the_snapshot_bench_snapshots_small_data_once_and_prints_its_ratio(tmp_path):
    out, pid = run_bench(tmp_path, "prod_snapshot.py", "--smoke",
                         "--config", str(config_file(tmp_path)))
    assert_lines(out, r"^pre-update snapshot of a \d+ MB database and a \d+ MB filestore, "
                      r"median of 1:$",
                 rf"^  appliance \(database \+ filestore\) +{SECONDS}$",
                 rf"^  bare CREATE DATABASE \.\.\. FILE_COPY +{SECONDS}$",
                 rf"^  appliance / bare +{RATIO} +\(target <= 1\.1x\)$")
    assert databases_named(f"%\\_smoke\\_{pid}") == []


def test_the_mail_bench_sends_a_few_mails_to_each_server_and_prints_their_ratio(tmp_path):
    out, pid = run_bench(tmp_path, "mail.py", "--smoke", "--config", str(config_file(tmp_path)))
    assert_lines(out, r"^mail catcher, 40 mails of \d+ KB from 4 senders .*median of 1 rounds:$",
                 r"^  catcher \(login, stored\) +\d+ mails/s +\(each: \d+\)$",
                 r"^  bare aiosmtpd sink +\d+ mails/s +\(each: \d+\)$",
                 r"^  ratio catcher/bare +\d+\.\d\d +\(target: >= 0\.5\)$")
    assert databases_named(f"appliance\\_bench\\_mail\\_{pid}") == []


@pytest.mark.docker
def test_the_development_build_bench_builds_one_round_and_prints_its_overhead(tmp_path):
    db_password()
    out, _ = run_bench(tmp_path, "dev_build.py", "--smoke")
    assert_lines(out, r"^development build, median of 1 rounds \(green addon\):$",
                 rf"^  push-to-green +{SECONDS} +\(each: \d+\.\d\d\)$",
                 rf"^  bare odoo-bin -i +{SECONDS} +\(each: \d+\.\d\d\)$",
                 rf"^  overhead +-?{SECONDS} +ratio {RATIO} +\(target: <= 2 s\)$",
                 r"^  steps \(median s\): checkout \d+\.\d\d, .*install \d+\.\d\d")


@pytest.mark.docker
def test_the_proxy_bench_measures_caddy_and_a_wake_up_once_and_prints_both_ratios(tmp_path):
    db_password()
    out, _ = run_bench(tmp_path, "proxy.py", "--smoke")
    assert_lines(out, r"^/web/health with wrk, 2 connections, median of 1 round\(s\) of 1 s "
                      r"each way:$",
                 r"^  through Caddy \(HTTPS\) +\d+ requests/s +\(rounds: \d+\)$",
                 r"^  straight to the build +\d+ requests/s +\(rounds: \d+\)$",
                 r"^  through/straight, each round: \d+\.\d\d +\(target: median >= 0\.7x\)$",
                 rf"^wake-up of a sleeping build: {SECONDS} to its first page; docker start "
                 rf"\+ ready {SECONDS} +\(medians of 1; target: <= 1\.2x\)$",
                 rf"^proxy throughput: {RATIO}$", rf"^wake: {RATIO}$")
    assert out.rstrip().splitlines()[-2].startswith("proxy throughput: ")


@pytest.mark.docker
def test_the_shell_bench_times_keystroke_echoes_both_ways_and_ends_with_its_line(tmp_path):
    db_password()
    out, _ = run_bench(tmp_path, "shell.py", "--smoke")
    millis = r"\d+\.\d\d ms"
    assert_lines(out, r"^keystroke echo, 20 keys per way in each of 1 round\(s\):$",
                 rf"^  WebSocket shell \(the Shell tab\) +p50 +{millis} +p95 +{millis}",
                 rf"^  docker exec -it from a local pty +p50 +{millis} +p95 +{millis}")
    assert re.fullmatch(rf"shell echo p95: {millis}, {RATIO}", out.rstrip().splitlines()[-1])
