"""Restores of backups, and imports, into production and staging: a real daemon, the
stand-in Odoo in Docker, the host's PostgreSQL and a real restic repository.

One production is deployed for the module and shared by its tests, in order: each
leaves it serving. Failures are injected into builds run in this process (the daemon
stopped meanwhile, so that it cannot take them).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path

import pytest

from appliance import layout
from appliance.errors import UserError
from appliance.jobs import backup, containers, queue, restores, stages
from appliance.jobs.locks import project_lock
from appliance.store import backups as backups_store
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.host import ADDONS
from tests.integration.harness import (Appliance, git, odoo_shell, push, send_from_odoo, sql,
                                       wait_for_mail)

pytestmark = pytest.mark.docker

# Its own name: project roles are the cluster's, shared with other suites running now.
PROJECT = "rsshop"
BUSINESS_TABLES = ("res_partner", "ir_attachment", "shop_order")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("restore")
    appliance = Appliance(folder, "restore")
    patch = pytest.MonkeyPatch()
    # The daemon's own hourly job would back production up beside the tests' backups.
    patch.setenv("APPLIANCE_BACKUP_DAILY", "false")
    try:
        appliance.start()
        appliance.token = appliance.make_user("admin")
        appliance.make_project(PROJECT)
        appliance.work = folder / "work"
        appliance.work.mkdir()
        git(appliance.work, "init", "-q", "-b", "main")
        build = deploy(appliance, "v1")
        assert (build["state"], build["deploy"]) == ("running", "first"), build["reason"]
        sql(live_db(appliance), "INSERT INTO shop_order (name, amount) VALUES ('first', 1)")
        yield appliance
    finally:
        appliance.close()
        patch.undo()


# -- helpers -------------------------------------------------------------------------------

def deploy(app, revision: str, branch: str = "main") -> dict:
    """Commit a revision of the shop (tests/addons/stages/<revision>) and push it."""
    for entry in app.work.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(ADDONS / "stages" / revision, app.work, dirs_exist_ok=True)
    git(app.work, "add", "-A")
    git(app.work, "commit", "-q", "--allow-empty", "-m", revision)
    _, (build_id,) = push(app.work, app.remote(PROJECT, "admin", app.token), branch)
    return app.wait_build(build_id, timeout=300)


def project(app) -> dict:
    with app.db.transaction() as conn:
        return projects_store.get_project(conn, PROJECT)


def admin(app) -> dict:
    with app.db.transaction() as conn:
        return conn.execute("SELECT * FROM users WHERE name = 'admin'").fetchone()


def live_db(app) -> str:
    return layout.production_database(app.config, PROJECT)


def live(app) -> dict:
    """Production's running build."""
    with app.db.transaction() as conn:
        branch = projects_store.get_branch(conn, project(app), "main")
        return builds_store.latest_build(conn, branch["id"], ("running",))


def attach(app, content: bytes) -> str:
    """An attachment made by Odoo in production; returns its store_fname."""
    script = ("import base64\n"
              f"a = env['ir.attachment'].create({{'name': 'scan.bin', 'raw': {content!r}}})\n"
              "env.cr.commit()\nprint(a.store_fname)\n")
    result = odoo_shell(app, live(app), script)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def rows(database: str) -> dict[str, list]:
    """The business tables' rows, in order."""
    return {table: sql(database, f"SELECT * FROM {table} ORDER BY id")
            for table in BUSINESS_TABLES if sql(database, "SELECT to_regclass(%s)", (table,))[0][0]}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def serves(app, build: dict) -> bool:
    with urllib.request.urlopen(layout.build_url(app.config, build) + "web/login",
                                timeout=10) as response:
        return response.status == 200


def builds_count(app) -> int:
    with app.db.transaction() as conn:
        return conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"]


def copy_backup(app, real: dict, project_row: dict | None = None, **changes) -> dict:
    """A done backup row pointing at `real`'s snapshots, with some columns changed."""
    proj = project_row or project(app)
    with app.db.transaction() as conn:
        branch = conn.execute("SELECT * FROM branches WHERE id = %s",
                              (real["branch_id"],)).fetchone()
        row = backups_store.start(conn, project=proj, branch=branch, build={"id": real["build_id"]},
                                  kind="manual")
        fields = {key: real[key] for key in ("dump_snapshot", "files_snapshot", "dump_bytes",
                                             "files_bytes", "manifest", "sha256")}
        fields.update(changes)
        state = fields.pop("state", "done")
        return backups_store.finish(conn, row["id"], state, **fields)


def events(app, build_id: int) -> list[str]:
    with app.db.transaction() as conn:
        return [r["message"] for r in conn.execute(
            "SELECT message FROM events WHERE build_id = %s ORDER BY id", (build_id,))]


def wait_for_event(app, build_id: int, text: str, timeout: float = 30) -> str:
    """The build's event holding `text` (a build is running before its last event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in events(app, build_id) if text in m]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no event {text!r} for build #{build_id}: {events(app, build_id)}")


def side_leftovers(app) -> list[str]:
    return [name for name in app.svc.postgres.databases(live_db(app))
            if "_load_" in name or "_snap_" in name]


@contextlib.contextmanager
def daemon_stopped(app):
    """The daemon stopped (its servers keep running): builds queued meanwhile are run
    here, by run_here."""
    app.stop()
    try:
        yield
    finally:
        app.start()


def run_here(app, build: dict) -> dict:
    with app.db.transaction() as conn:
        claimed = builds_store.claim_next(conn)
    assert claimed["id"] == build["id"]
    queue.run_build(app.svc, claimed)
    return app.wait_build(build["id"], timeout=10)


# -- refusals ------------------------------------------------------------------------------

def test_what_cannot_be_restored_is_refused_when_asked_and_nothing_is_queued(app):
    proj, user = project(app), admin(app)
    real = backup.create(app.svc, proj)
    manifest = dict(real["manifest"], major_version="17.0")
    older = copy_backup(app, real, manifest=manifest)
    failed = copy_backup(app, real, state="failed")
    forgotten = copy_backup(app, real)
    with app.db.transaction() as conn:
        backups_store.mark_forgotten(conn, [forgotten["id"]])
        other = projects_store.create_project(conn, "rsother", "18.0", "appl_test_")
        projects_store.ensure_branch(conn, proj, "rs-feature")
    others = copy_backup(app, real, project_row=other)
    before = builds_count(app)

    with pytest.raises(UserError, match=rf"backup #{older['id']} is of Odoo 17\.0; this "
                                        r"project runs 18\.0"):
        restores.request_restore(app.svc, proj, older["id"], "main", user)
    with pytest.raises(UserError, match=f"{PROJECT} has no backup #{others['id']}"):
        restores.request_restore(app.svc, proj, others["id"], "main", user)
    with pytest.raises(UserError, match="is failed"):
        restores.request_restore(app.svc, proj, failed["id"], "main", user)
    with pytest.raises(UserError, match="removed from the repository"):
        restores.request_restore(app.svc, proj, forgotten["id"], "main", user)
    with pytest.raises(UserError, match="rs-feature is a development branch"):
        restores.request_restore(app.svc, proj, real["id"], "rs-feature", user)
    with pytest.raises(UserError, match="no branch 'nope'"):
        restores.request_restore(app.svc, proj, real["id"], "nope", user)
    assert builds_count(app) == before


def test_a_restore_is_refused_while_the_branch_is_building(app):
    proj, user = project(app), admin(app)
    real = backup.create(app.svc, proj)
    with daemon_stopped(app):
        first = restores.request_restore(app.svc, proj, real["id"], "main", user)
        try:
            with pytest.raises(UserError, match="main is building"):
                restores.request_restore(app.svc, proj, real["id"], "main", user)
        finally:
            with app.db.transaction() as conn:  # never run: production stays as it is
                builds_store.set_state(conn, first["id"], "preparing")
                builds_store.set_state(conn, first["id"], "failed", result="failure",
                                       reason="cancelled by the test")
    assert events(app, first["id"])[0] == (f"restore of backup #{real['id']} into main "
                                           f"queued by admin: build #{first['id']}")


# -- staging -------------------------------------------------------------------------------

def test_a_backup_restored_into_a_new_staging_branch_is_identical_then_neutralized(app):
    proj, user = project(app), admin(app)
    db = live_db(app)
    attach(app, b"an invoice scan")
    attach(app, b"a signed contract")
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('backed up', 12)")
    sql(db, "UPDATE ir_cron SET active = true")
    saved = backup.create(app.svc, proj)
    expected_rows = rows(db)
    expected_files = digests(layout.production_filestore(app.config, PROJECT))
    assert len(expected_files) >= 2

    dev = deploy(app, "v1", branch="rs-staging")
    assert dev["state"] == "running", dev["reason"]
    stages.move(app.svc, proj, "rs-staging", "staging", user)
    queued = restores.request_restore(app.svc, proj, saved["id"], "rs-staging", user)
    build = app.wait_build(queued["id"], timeout=300)
    assert (build["state"], build["trigger"], build["deploy"]) == \
        ("running", "restore", "restore"), build["reason"]

    copy = build["database"]
    assert copy != db and rows(copy) == expected_rows
    data = containers.build_paths(app.config, build["id"], build["data_dir"]).data
    assert digests(data / "filestore" / copy) == expected_files
    crons = dict(sql(copy, "SELECT name, active FROM ir_cron"))
    assert crons and not any(on for name, on in crons.items() if "vacuum" not in name.lower())
    assert sql(copy, "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'") != \
        sql(db, "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'")
    send_from_odoo(app, build, "restored staging invoice")
    assert wait_for_mail(app, build["id"], "restored staging invoice")
    assert app.wait_build(dev["id"], timeout=30, states=("stopped",))["state"] == "stopped"
    assert wait_for_event(app, build["id"], "loaded into rs-staging, neutralized")


def test_a_database_manager_zip_imports_into_staging_and_garbage_is_refused_at_once(
        app, tmp_path):
    from appliance.jobs import backup_export
    proj, user = project(app), admin(app)
    db = live_db(app)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('zipped', 3)")
    saved = backup.create(app.svc, proj)
    expected_rows = rows(db)
    expected_files = digests(layout.production_filestore(app.config, PROJECT))
    upload = tmp_path / "acme.zip"
    with open(upload, "wb") as handle:
        for chunk in backup_export.zip_stream(app.svc, saved):
            handle.write(chunk)
    garbage = tmp_path / "notes.zip"
    garbage.write_bytes(b"not a database at all\n" * 100)
    before = builds_count(app)
    with pytest.raises(UserError):
        restores.request_import(app.svc, proj, garbage, "notes.zip", "rs-staging", user)
    assert builds_count(app) == before

    queued = restores.request_import(app.svc, proj, upload, "acme.zip", "rs-staging", user,
                                     remove_after=True)
    build = app.wait_build(queued["id"], timeout=300)
    assert (build["state"], build["trigger"], build["deploy"]) == \
        ("running", "import", "import"), build["reason"]
    assert rows(build["database"]) == expected_rows
    data = containers.build_paths(app.config, build["id"], build["data_dir"]).data
    assert digests(data / "filestore" / build["database"]) == expected_files
    crons = sql(build["database"], "SELECT name, active FROM ir_cron")
    assert not any(on for name, on in crons if "vacuum" not in name.lower())
    deadline = time.monotonic() + 30  # the build ends once its server runs
    while upload.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not upload.exists()
    with app.db.transaction() as conn:
        shown = conn.execute("SELECT data FROM events WHERE build_id = %s AND kind = 'import' "
                             "ORDER BY id LIMIT 1", (build["id"],)).fetchone()["data"]
    assert shown["upload"] == "acme.zip" and str(tmp_path) not in str(shown)


# -- production ----------------------------------------------------------------------------

def test_a_backup_restored_into_production_replaces_its_data_after_a_safety_backup(app):
    proj, user = project(app), admin(app)
    db, before = live_db(app), live(app)
    saved = backup.create(app.svc, proj)
    expected_rows = rows(db)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('after the backup', 99)")
    late_file = attach(app, b"scanned after the backup")
    files = layout.production_filestore(app.config, PROJECT)

    queued = restores.request_restore(app.svc, proj, saved["id"], "main", user)
    build = app.wait_build(queued["id"], timeout=300)
    assert (build["state"], build["trigger"]) == ("running", "restore"), build["reason"]
    assert rows(db) == expected_rows
    assert not (files / late_file).exists()
    assert serves(app, build)
    assert app.wait_build(before["id"], timeout=30, states=("done",))["state"] == "done"
    with app.db.transaction() as conn:
        safety = [b for b in backups_store.list_backups(conn, proj) if b["kind"] == "safety"]
    assert safety and safety[0]["state"] == "done" and safety[0]["id"] > saved["id"]
    assert [s["state"] for s in app.steps(build["id"])] == ["done"] * 11
    assert side_leftovers(app) == [] and not list(files.parent.parent.parent.glob("load-*"))


def test_a_restore_of_a_truncated_dump_fails_and_production_serves_as_it_was(app):
    proj, user = project(app), admin(app)
    db, before = live_db(app), live(app)
    real = backup.create(app.svc, proj)
    repo = backup.repository(app.svc)
    with backup.open_dump(app.svc, real) as stream:
        dumped = stream.read()
    half = repo.backup_stdin([dumped[: len(dumped) // 2]], "database.dump",
                             [f"project={PROJECT}", "kind=manual", "part=dump"])
    truncated = copy_backup(app, real, dump_snapshot=half.snapshot_id)
    expected = rows(db)

    queued = restores.request_restore(app.svc, proj, truncated["id"], "main", user)
    build = app.wait_build(queued["id"], timeout=300)
    assert build["state"] == "failed" and "restoring the dump" in build["reason"], build
    failed_step = [s["name"] for s in app.steps(build["id"]) if s["state"] == "failed"]
    assert failed_step == ["load"]
    assert rows(db) == expected
    assert app.wait_build(before["id"], timeout=10)["state"] == "running" and serves(app, before)
    assert side_leftovers(app) == []


def test_a_restore_that_fails_after_the_swap_puts_production_back(app, monkeypatch):
    proj, user = project(app), admin(app)
    db, before = live_db(app), live(app)
    saved = backup.create(app.svc, proj)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('kept by the rollback', 5)")
    expected = rows(db)
    files = layout.production_filestore(app.config, PROJECT)
    expected_files = digests(files)
    real_serve = containers.serve

    def serve(svc, setup, *args, **kwargs):
        if setup.build_id == queued["id"]:  # the restored data is in place by now
            assert sql(db, "SELECT count(*) FROM shop_order WHERE name = "
                           "'kept by the rollback'") == [(0,)]
            raise containers.BuildFailed("the server did not start (injected)")
        return real_serve(svc, setup, *args, **kwargs)
    monkeypatch.setattr(containers, "serve", serve)

    with daemon_stopped(app):
        queued = restores.request_restore(app.svc, proj, saved["id"], "main", user)
        build = run_here(app, queued)
    assert build["state"] == "failed" and "injected" in build["reason"]
    assert rows(db) == expected and digests(files) == expected_files
    again = app.wait_build(before["id"], timeout=30)
    assert again["state"] == "running" and serves(app, again)
    assert any("database and filestore restored from the snapshot" in m
               for m in events(app, build["id"]))
    assert side_leftovers(app) == []


class BackupAsUpload(restores.BackupLoader):
    """An upload in the tests: a backup's data, under a file's name."""

    def __init__(self, row: dict, name: str):
        super().__init__(row)
        self.description = f"upload {name}"


def test_an_import_into_production_turns_off_its_crons_and_mail_servers(app, monkeypatch,
                                                                        tmp_path):
    proj, user = project(app), admin(app)
    db = live_db(app)
    sql(db, "UPDATE ir_cron SET active = true")
    sql(db, "UPDATE ir_mail_server SET active = true")
    crons = sql(db, "SELECT count(*) FROM ir_cron WHERE name NOT ILIKE '%%vacuum%%'")[0][0]
    servers = sql(db, "SELECT count(*) FROM ir_mail_server")[0][0]
    saved = backup.create(app.svc, proj)
    upload = tmp_path / "acme.zip"
    upload.write_bytes(b"the upload")
    fake = types.ModuleType("appliance.jobs.dump_import")
    fake.UploadLoader = lambda path, name: BackupAsUpload(saved, name)
    monkeypatch.setitem(sys.modules, "appliance.jobs.dump_import", fake)

    with daemon_stopped(app):
        queued = restores.request_import(app.svc, proj, upload, "acme.zip", "main", user,
                                         remove_after=True)
        build = run_here(app, queued)
    assert (build["state"], build["trigger"]) == ("running", "import"), build["reason"]
    assert sql(db, "SELECT count(*) FROM ir_cron WHERE active AND name NOT ILIKE "
                   "'%%vacuum%%'") == [(0,)]
    assert sql(db, "SELECT count(*) FROM ir_mail_server WHERE active") == [(0,)]
    assert any(f"{crons} scheduled action(s) and {servers} outgoing mail server(s) "
               "deactivated" in m for m in events(app, build["id"]))
    assert not upload.exists()
    assert serves(app, build)


# -- deploys and backups ------------------------------------------------------------------

def test_a_deploy_waits_for_a_backup_of_its_project(app):
    proj = project(app)
    result = {}
    with project_lock(app.svc, proj["id"], "daily backup of rsshop"):
        pusher = threading.Thread(target=lambda: result.update(build=deploy(app, "v1_code_only")))
        pusher.start()
        time.sleep(8)
        with app.db.transaction() as conn:
            waiting = builds_store.latest_build(
                conn, projects_store.get_branch(conn, proj, "main")["id"])
            started = [s for s in builds_store.steps(conn, waiting["id"])
                       if s["state"] != "pending"]
        assert waiting["state"] == "preparing" and started == []
    pusher.join(timeout=300)
    assert result["build"]["state"] == "running", result["build"]["reason"]


def test_a_full_deploy_whose_update_backup_fails_changes_nothing(app):
    db, before = live_db(app), live(app)
    expected = rows(db)
    backup.repository(app.svc)  # made, with its password, if no backup was made yet
    password = backup.password_path(app.config)
    password.rename(password.with_name("password-away"))  # restic cannot open the repository
    try:
        build = deploy(app, "v2")
    finally:
        password.with_name("password-away").rename(password)
    assert build["state"] == "failed", build
    states = {s["name"]: s["state"] for s in app.steps(build["id"])}
    assert (states["snapshot"], states["backup"], states["update"]) == \
        ("done", "failed", "skipped")
    assert rows(db) == expected
    assert sql(db, "SELECT latest_version FROM ir_module_module WHERE name = 'shop'") == \
        [("18.0.1.0.0",)]
    again = app.wait_build(before["id"], timeout=30)
    assert again["state"] == "running" and serves(app, again)
    assert side_leftovers(app) == []


def test_a_full_deploy_backs_up_the_data_as_it_was_before_the_update(app):
    proj = project(app)
    build = deploy(app, "v2")
    assert (build["state"], build["deploy"]) == ("running", "full"), build["reason"]
    with app.db.transaction() as conn:
        made = backups_store.list_backups(conn, proj)[0]
    assert (made["kind"], made["state"]) == ("update", "done")
    assert made["manifest"]["modules"]["shop"] == "18.0.1.0.0"
    assert sql(live_db(app), "SELECT latest_version FROM ir_module_module WHERE name = "
                             "'shop'") == [("18.0.1.0.1",)]
    with backup.open_dump(app.svc, made) as stream:
        assert b"migrated" not in stream.read()
    steps = {s["name"]: s for s in app.steps(build["id"])}
    assert steps["backup"]["state"] == "done" and "update backup" in steps["backup"]["detail"]
    print(f"\nupdate backup in the maintenance window: {steps['backup']['seconds']:.2f} s "
          f"(snapshot {steps['snapshot']['seconds']:.2f} s, update "
          f"{steps['update']['seconds']:.2f} s)")
