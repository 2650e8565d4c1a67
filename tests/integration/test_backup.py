"""Backups of a real production (the stand-in Odoo in Docker, the host's PostgreSQL) into a
real restic repository: what a backup holds, what a second one adds, locks, the daily
schedule, and a backup killed mid-way.

One production is deployed for the module and shared by its tests, which only add to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from appliance import layout
from appliance.errors import BackupError, UserError
from appliance.jobs import backup
from appliance.jobs.locks import project_lock
from appliance.services import Services
from appliance.store import backups as backups_store
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.conftest import ROOT, admin_conninfo, db_password
from tests.integration.harness import odoo_shell, production_appliance, sql

pytestmark = pytest.mark.docker

# Its own name: project roles are the cluster's, shared with other suites running now.
PROJECT = "bkshop"
ODOO_KEYS = {"odoo_dump", "db_name", "version", "version_info", "major_version", "pg_version",
             "modules"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with production_appliance(tmp_path_factory.mktemp("backup"), "backup",
                              PROJECT) as appliance:
        yield appliance


def project(app) -> dict:
    with app.db.transaction() as conn:
        return projects_store.get_project(conn, PROJECT)


def production(app) -> tuple[str, object]:
    db = layout.database_name(app.config, PROJECT, "production")
    return db, layout.production_data_dir(app.config, PROJECT)


def attach(app, content: bytes) -> str:
    """An attachment made by Odoo in production; returns its store_fname."""
    script = ("import base64\n"
              f"a = env['ir.attachment'].create({{'name': 'scan.bin', 'raw': {content!r}}})\n"
              "env.cr.commit()\nprint(a.store_fname)\n")
    result = odoo_shell(app, app.build, script)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def restic(app, *args: str) -> subprocess.CompletedProcess:
    folder = backup.backups_dir(app.config)
    return subprocess.run(["restic", "--repo", str(folder / "restic"), "--password-file",
                           str(backup.password_path(app.config)), "--no-cache", *args],
                          capture_output=True, check=True, env={**os.environ, "TZ": "UTC"})


def snapshots(app, *tags: str) -> list[dict]:
    out = restic(app, "snapshots", "--json", *(["--tag", ",".join(tags)] if tags else []))
    return json.loads(out.stdout or b"[]")


def test_a_backup_holds_the_dump_the_files_and_odoo_s_manifest(app):
    db, data = production(app)
    store_fname = attach(app, b"an invoice scan")
    row = backup.create(app.svc, project(app))
    assert (row["state"], row["kind"], row["branch"]) == ("done", "manual", "main")
    assert row["dump_bytes"] > 0 and row["files_bytes"] > 0 and row["bytes_added"] > 0

    parts = {s["tags"][-1]: s for s in snapshots(app, f"project={PROJECT}",
                                                 f"backup={row['id']}")}
    assert set(parts) == {"part=dump", "part=files"}
    assert set(parts["part=dump"]["tags"]) == {f"project={PROJECT}", "kind=manual",
                                               f"backup={row['id']}", "part=dump"}
    assert parts["part=dump"]["id"].startswith(row["dump_snapshot"])

    dumped = restic(app, "dump", row["dump_snapshot"], "/database.dump").stdout
    assert hashlib.sha256(dumped).hexdigest() == row["sha256"]
    assert len(dumped) == row["dump_bytes"] and dumped.startswith(b"PGDMP")

    manifest = json.loads(restic(app, "dump", row["files_snapshot"], "/manifest.json").stdout)
    assert ODOO_KEYS <= set(manifest) and manifest["odoo_dump"] == "1"
    assert manifest["db_name"] == db
    assert (manifest["version"], manifest["major_version"]) == ("18.0-stub", "18.0")
    assert manifest["version_info"] == [18, 0, 0, "final", 0, ""]
    assert manifest["modules"]["shop"] == "18.0.1.0.0" and "base" in manifest["modules"]
    server = sql(db, "SHOW server_version_num")[0][0]
    assert manifest["pg_version"] == f"{int(server) // 10000}.0"
    ours = manifest["appliance"]
    assert (ours["project"], ours["branch"], ours["kind"], ours["build_id"], ours["revision"]) \
        == (PROJECT, "main", "manual", app.build["id"], app.build["commit"])
    assert ours["dump"]["sha256"] == row["sha256"] and ours["dump"]["bytes"] == len(dumped)
    assert row["manifest"] == manifest

    listed = restic(app, "ls", row["files_snapshot"]).stdout.decode()
    assert f"/filestore/{store_fname}" in listed.splitlines()
    assert "/logs/update.log" in listed.splitlines() or "/logs/install.log" in listed.splitlines()
    assert "/server-log/odoo.log" in listed.splitlines()
    assert restic(app, "dump", row["files_snapshot"],
                  f"/filestore/{store_fname}").stdout == b"an invoice scan"


def test_the_dump_restores_into_a_database_with_production_s_rows(app):
    db, _ = production(app)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('to restore', 7)")
    row = backup.create(app.svc, project(app))
    scratch = f"backup_restore_{os.getpid()}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        conn.execute(f'CREATE DATABASE "{scratch}"')
    try:
        with backup.open_dump(app.svc, row) as stream:
            subprocess.run(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-h",
                            "127.0.0.1", "-U", "appliance", "-d", scratch], stdin=stream,
                           check=True, capture_output=True,
                           env={**os.environ, "PGPASSWORD": db_password()})
        assert ("to restore", 7) in sql(scratch, "SELECT name, amount FROM shop_order")
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def test_a_second_backup_after_one_new_attachment_adds_about_that_attachment(app):
    db, _ = production(app)
    # Enough rows that a dump re-sent whole would be plain to see (about 40 MB of text).
    sql(db, "CREATE TABLE IF NOT EXISTS bulk (id serial, data bytea)")
    sql(db, "INSERT INTO bulk (data) SELECT decode(string_agg(md5(random()::text), ''), 'hex')"
            " FROM generate_series(1, 64 * 1024 * 20) g GROUP BY mod(g, 20)")
    first = backup.create(app.svc, project(app))
    size = 2 * MiB
    attach(app, os.urandom(size))
    second = backup.create(app.svc, project(app))
    assert second["dump_bytes"] > 40 * MiB
    # The attachment, plus the chunks of the dump that changed (its head, which lists the
    # sequences' values, and the rows around the new one; restic's chunks are 0.5 to 8
    # MiB, 1 on average), plus trees: not the dump again.
    added = second["bytes_added"]
    assert size <= added <= size + 8 * MiB, (first, second)
    assert added - size < second["dump_bytes"] / 4


def test_a_link_in_the_data_dir_is_kept_as_a_link_and_never_followed(app):
    db, data = production(app)
    filestore = data / "filestore" / db
    os.symlink("/etc", filestore / "zz")
    os.symlink("/etc/passwd", filestore / "ab" / "passwd") if (filestore / "ab").exists() \
        else os.symlink("/etc/passwd", filestore / "passwd")
    try:
        row = backup.create(app.svc, project(app))
        nodes = [json.loads(line) for line in
                 restic(app, "ls", "--json", row["files_snapshot"]).stdout.splitlines()]
        by_path = {n["path"]: n for n in nodes if n.get("struct_type") == "node"}
        assert by_path["/filestore/zz"]["type"] == "symlink"
        assert not any(path.startswith("/filestore/zz/") for path in by_path)
        assert all(n["type"] == "symlink" for p, n in by_path.items() if p.endswith("/passwd"))
    finally:
        for link in filestore.rglob("*"):
            if link.is_symlink():
                link.unlink()


def test_a_development_branch_or_an_unknown_one_is_refused_and_nothing_is_recorded(app):
    with app.db.transaction() as conn:
        proj = projects_store.get_project(conn, PROJECT)
        dev, _ = projects_store.ensure_branch(conn, proj, "feature")
        before = len(backups_store.list_backups(conn, proj))
    with pytest.raises(UserError, match="only production and staging"):
        backup.create(app.svc, proj, dev)
    with pytest.raises(UserError, match="no branch 'nope'"):
        backup.create(app.svc, proj, "nope")
    with pytest.raises(UserError, match="unknown kind"):
        backup.create(app.svc, proj, None, "hourly")
    with app.db.transaction() as conn:
        assert len(backups_store.list_backups(conn, proj)) == before


def test_a_backup_waits_for_a_deploy_of_its_project_then_runs(app):
    proj = project(app)
    done = []
    with project_lock(app.svc, proj["id"], "deploy of build #99"):
        worker = threading.Thread(target=lambda: done.append(backup.create(app.svc, proj)))
        worker.start()
        time.sleep(2)
        with app.db.transaction() as conn:
            running = [r for r in backups_store.list_backups(conn, proj) if r["state"] != "done"]
        assert not done and not running  # waiting before it even starts
    worker.join(timeout=120)
    assert done and done[0]["state"] == "done"


def test_a_backup_that_waits_too_long_names_who_holds_the_project(app, monkeypatch):
    proj = project(app)
    monkeypatch.setattr(app.svc.config.backup, "lock_wait_minutes", 0.02)
    taken, release = threading.Event(), threading.Event()

    def deploy():
        with project_lock(app.svc, proj["id"], "deploy of build #99"):
            taken.set()
            release.wait(60)
    holder = threading.Thread(target=deploy)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(BackupError, match="deploy of build #99"):
            backup.create(app.svc, proj)
    finally:
        release.set()
        holder.join()


def test_the_daily_job_backs_up_a_production_once_at_its_hour(app):
    proj = project(app)
    hour = backup.daily_hour(app.config, PROJECT)
    now = datetime.now(timezone.utc)
    at_hour = now.replace(hour=hour, minute=5, second=0, microsecond=0)
    if at_hour > now:
        at_hour -= timedelta(days=1)
    made = backup.run_daily(app.svc, now=at_hour)
    assert [(r["kind"], r["project"]) for r in made] == [("daily", PROJECT)]
    assert backup.run_daily(app.svc, now=at_hour + timedelta(minutes=50)) == []
    with app.db.transaction() as conn:
        rows = backups_store.list_backups(conn, proj)
    assert rows[0]["kind"] == "daily" and rows[0]["state"] == "done"


def test_backups_are_made_and_listed_by_the_cli_as_json(app):
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(app.config_path), "backup"]
    run = lambda *args: subprocess.run(cli + list(args), capture_output=True, text=True,  # noqa
                                       cwd=ROOT)
    made = run("create", PROJECT, "--json")
    assert made.returncode == 0, made.stderr
    row = json.loads(made.stdout)
    assert (row["state"], row["kind"], row["branch"]) == ("done", "manual", "main")
    listed = run("list", PROJECT, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0] == row
    refused = run("create", PROJECT, "--branch", "feature")
    assert refused.returncode == 1 and "only production and staging" in refused.stderr
    assert "#" + str(row["id"]) in run("list", PROJECT).stdout


def test_a_cli_backup_killed_midway_leaves_no_running_backup_and_no_lock_after_start(app):
    db, _ = production(app)
    app.stop()
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(app.config_path)]
    info = psycopg.conninfo.make_conninfo(host="127.0.0.1", dbname=db, user="appliance",
                                          password=db_password())
    with psycopg.connect(info) as blocker:  # pg_dump waits for this lock: a backup mid-way
        blocker.execute("LOCK TABLE shop_order IN ACCESS EXCLUSIVE MODE")
        process = subprocess.Popen(cli + ["backup", "create", PROJECT], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            row = wait_for_running_backup(app)
            deadline = time.monotonic() + 30
            while not locks(app) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert locks(app), "restic holds no lock during the backup"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        blocker.rollback()
    time.sleep(1)
    assert locks(app)  # stale, left by the killed restic
    app.start()
    with app.db.transaction() as conn:
        after = backups_store.get(conn, row["id"])
    assert after["state"] == "failed" and "interrupted" in after["error"]
    assert locks(app) == []
    backup.prune(app.svc, project(app), free_space=False)
    assert snapshots(app, f"backup={row['id']}") == []


def test_a_stop_interrupts_a_running_backup_which_fails_saying_so(app):
    svc = Services(app.config, app.db)  # a repository object of its own, stopped below
    db, _ = production(app)
    info = psycopg.conninfo.make_conninfo(host="127.0.0.1", dbname=db, user="appliance",
                                          password=db_password())
    errors = []

    def run():
        try:
            backup.create(svc, project(app))
        except BackupError as exc:
            errors.append(exc)
    with psycopg.connect(info) as blocker:  # pg_dump waits for this lock: a backup mid-way
        blocker.execute("LOCK TABLE shop_order IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run)
        worker.start()
        row = wait_for_running_backup(app)
        while not locks(app):
            time.sleep(0.2)
        # restic registers its lock for removal a moment after writing it: interrupted
        # in between, it leaves it (stale, for the next `unlock`).
        time.sleep(1)
        stopped = time.monotonic()
        backup.stop(svc)
        worker.join(timeout=30)
        assert not worker.is_alive() and time.monotonic() - stopped < 15
        blocker.rollback()
    assert errors
    with app.db.transaction() as conn:
        after = backups_store.get(conn, row["id"])
    assert after["state"] == "failed"
    assert after["error"].startswith("interrupted: the appliance stopped during the backup")
    assert locks(app) == [] and snapshots(app, f"backup={row['id']}") == []
    with pytest.raises(BackupError, match="stopping"):
        backup.create(svc, project(app))


def wait_for_running_backup(app, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.db.transaction() as conn:
            rows = [r for r in backups_store.list_backups(conn, project(app))
                    if r["state"] == "running"]
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise AssertionError("no backup started")


def locks(app) -> list[str]:
    return restic(app, "list", "locks", "--no-lock").stdout.decode().split()


def test_the_repository_password_is_made_once_and_kept_to_its_owner(app):
    path = backup.password_path(app.config)
    assert path.stat().st_mode & 0o777 == 0o600
    assert backup.backups_dir(app.config).stat().st_mode & 0o777 == 0o700
    text = path.read_text()
    app.svc.extra.pop("restic", None)
    backup.repository(app.svc)
    assert path.read_text() == text


# -- retention, on backups made directly in the repository (no Odoo needed) -------------

def test_retention_over_120_days_keeps_7_daily_4_weekly_3_monthly_and_others_14_days(
        config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        proj = projects_store.create_project(conn, "keep", "18.0", "appl_test_")
        branch, _ = projects_store.ensure_branch(conn, proj, "main")
        build = builds_store.enqueue(conn, project=proj, branch=branch, commit="c" * 40)
    repo, work = backup.repository(svc), config.paths.data_dir / "files"
    work.mkdir()
    (work / "manifest.json").write_text("{}")

    def make(kind: str, moment: datetime, state: str = "done", files: bool = True) -> int:
        with db.transaction() as conn:
            row = backups_store.start(conn, project=proj, branch=branch, build=build,
                                      kind=kind, started_at=moment)
        tags = ["project=keep", f"kind={kind}", f"backup={row['id']}"]
        dump = repo.backup_stdin([f"dump of {moment}".encode()], "database.dump",
                                 tags + ["part=dump"], time=moment)
        if files:
            files = repo.backup_paths(["manifest.json"], work, tags + ["part=files"],
                                      time=moment).snapshot_id
        with db.transaction() as conn:
            backups_store.finish(conn, row["id"], state, dump_snapshot=dump.snapshot_id,
                                 files_snapshot=files or None)
        return row["id"]

    start = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
    days = {}
    # Daily backups of their dump alone, made four at a time: 120 of them in seconds.
    for first, last in ((0, 60), (60, 120)):
        with ThreadPoolExecutor(4) as pool:
            moments = [start + timedelta(days=day) for day in range(first, last)]
            ids = pool.map(lambda moment: make("daily", moment, files=False), moments)
            days.update(zip(ids, moments))
        if first == 0:  # retention runs along the way too, as the daily job does
            backup.prune(svc, proj, now=moments[-1] + timedelta(hours=1), free_space=False)
    # A failed backup later on the last day: its snapshots never take that day's place.
    failed = make("daily", start + timedelta(days=119, hours=3), state="failed")
    old_manual = make("manual", start + timedelta(days=100))
    old_failed = make("manual", start + timedelta(days=101), state="failed")
    manual = make("manual", start + timedelta(days=110))
    update = make("update", start + timedelta(days=115))

    result = backup.prune(svc, proj, now=start + timedelta(days=119, hours=5))

    reasons = [match for matches in result["reasons"].values() for match in matches]
    assert (reasons.count("daily snapshot"), reasons.count("weekly snapshot"),
            reasons.count("monthly snapshot")) == (7, 4, 3)
    assert set(result["kept"]) == expected_daily(days) | {manual, update}
    assert old_manual in result["forgotten"] and failed not in result["kept"]
    left = {int(s.tag("backup")) for s in repo.snapshots(["project=keep"])}
    assert left == set(result["kept"])
    assert len(repo.snapshots(["project=keep", f"backup={manual}"])) == 2  # dump and files
    with db.transaction() as conn:
        listed = {row["id"] for row in backups_store.list_backups(conn, proj)}
    assert listed == set(result["kept"]) | {failed}  # a failure stays listed 14 days
    assert old_failed not in listed


def expected_daily(days: dict) -> set[int]:
    """restic's buckets: the newest backup of each of the 7 latest days, 4 latest ISO
    weeks and 3 latest months."""
    kept = set()
    for count, bucket in ((7, lambda t: t.date()), (4, lambda t: t.isocalendar()[:2]),
                          (3, lambda t: (t.year, t.month))):
        newest: dict = {}
        for backup_id, moment in sorted(days.items(), key=lambda item: item[1]):
            newest[bucket(moment)] = backup_id
        kept |= {newest[key] for key in sorted(newest)[-count:]}
    return kept
