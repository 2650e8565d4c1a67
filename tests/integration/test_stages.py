"""Production updates that roll back, staging on a neutralized copy, moves, merges, GC.

One module `shop` is pushed in successive revisions (tests/addons/stages/<revision>) to
a real daemon; production's database and filestore are inspected directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from appliance import layout
from appliance.jobs import gc
from tests.host import ROOT, db_password
from tests.integration.harness import Appliance, ShopWork, git, sql

pytestmark = pytest.mark.docker


@pytest.fixture
def app(tmp_path):
    appliance = Appliance(tmp_path, "stages")
    try:
        appliance.start()
        appliance.token = appliance.make_user("admin")
        appliance.make_project("shop")
        yield appliance
    finally:
        appliance.close()


def dump(dbname: str) -> str:
    env = {**os.environ, "PGPASSWORD": db_password()}
    out = subprocess.run(["pg_dump", "--no-owner", "--no-acl", "-h", "127.0.0.1", "-U",
                           "appliance", dbname], capture_output=True, text=True, check=True,
                          env=env).stdout
    # pg_dump's \restrict lines carry a random key on every run.
    return "\n".join(line for line in out.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def production(app) -> tuple[str, Path]:
    db = layout.database_name(app.config, "shop", "production")
    return db, layout.production_data_dir(app.config, "shop") / "filestore" / db


def serves(app, build) -> bool:
    with urllib.request.urlopen(layout.build_url(app.config, build) + "web/login",
                                timeout=10) as response:
        return response.status == 200


@pytest.fixture
def live(app, tmp_path):
    """Production deployed from v1, with an order and a filestore file of its own."""
    work = ShopWork(app, tmp_path / "work")
    work.commit("v1")
    first = work.push()
    assert (first["state"], first["result"], first["deploy"]) == ("running", "success", "first"), \
        first["reason"]
    db, files = production(app)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('before update', 42)")
    (files / "ab").mkdir(parents=True, exist_ok=True)
    (files / "ab" / "ab12").write_bytes(b"an attachment")
    return work, first


def test_a_record_survives_a_version_bump_update(app, live):
    work, first = live
    work.commit("v2")
    build = work.push()
    assert (build["state"], build["deploy"]) == ("running", "full"), build["reason"]
    assert "shop" in build["plan"]["update"]
    db, _ = production(app)
    assert sql(db, "SELECT name, note FROM shop_order") == [("before update", "migrated")]
    assert sql(db, "SELECT latest_version FROM ir_module_module WHERE name = 'shop'") == \
        [("18.0.1.0.1",)]
    assert app.wait_build(first["id"], states=("done",), timeout=10)["state"] == "done"
    assert serves(app, build)


def test_a_code_only_push_restarts_without_update(app, live):
    work, first = live
    work.commit("v1_code_only")
    build = work.push()
    assert (build["state"], build["deploy"]) == ("running", "fast"), build["reason"]
    assert not layout.log_path(app.config, build["id"], "update").exists()
    assert serves(app, build)


@pytest.mark.parametrize("revision", ["v2_broken_update", "v2_server_fails"])
def test_a_failing_update_restores_database_and_filestore_and_the_previous_revision(
        app, live, revision):
    work, first = live
    db, files = production(app)
    before, files_before = dump(db), files_of(files)
    work.commit(revision)
    build = work.push()
    assert (build["state"], build["result"]) == ("failed", "failure")
    assert build["reason"]
    assert layout.log_path(app.config, build["id"], "update").read_text().strip()
    assert dump(db) == before
    assert files_of(files) == files_before
    again = app.wait_build(first["id"])
    assert again["state"] == "running" and serves(app, again)
    assert not app.svc.postgres.databases(app.config.database.db_prefix + "shop_snap_")


def test_staging_is_a_neutralized_copy_of_production(app, live, tmp_path):
    from appliance.jobs import stages
    work, _ = live
    db, files = production(app)
    sql(db, "UPDATE ir_cron SET active = true")
    work.push("feature")  # a development build first
    with app.db.transaction() as conn:
        project = conn.execute("SELECT * FROM projects WHERE name = 'shop'").fetchone()
    stages.move(app.svc, project, "feature", "staging", None)
    build = stages.rebuild(app.svc, project, "feature", None)
    build = app.wait_build(build["id"], timeout=240)
    assert (build["state"], build["deploy"]) == ("running", "copy"), build["reason"]
    copy = build["database"]
    assert sql(copy, "SELECT name FROM shop_order") == [("before update",)]
    crons = dict(sql(copy, "SELECT name, active FROM ir_cron"))
    assert not any(active for name, active in crons.items() if "vacuum" not in name.lower())
    assert not any(a for (a,) in sql(copy, "SELECT active FROM ir_mail_server "
                                           "WHERE smtp_host = 'smtp.example.com'"))
    sql(copy, "INSERT INTO shop_order (name, amount) VALUES ('staging only', 1)")
    assert ("staging only",) not in sql(db, "SELECT name FROM shop_order")
    copied = containers_data(app, build) / "filestore" / copy / "ab" / "ab12"
    assert copied.stat().st_ino == (files / "ab" / "ab12").stat().st_ino
    copied.unlink()
    assert (files / "ab" / "ab12").read_bytes() == b"an attachment"


def containers_data(app, build) -> Path:
    from appliance.jobs import containers
    return containers.build_paths(app.config, build["id"], build["data_dir"]).data


def test_moves_and_merges_by_cli(app, live, tmp_path):
    work, _ = live
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(app.config_path)]
    run = lambda *args: subprocess.run(cli + list(args), capture_output=True, text=True,  # noqa
                                       cwd=ROOT)
    work.push("feature")
    refused = run("branch", "stage", "shop", "feature", "production")
    assert refused.returncode == 1 and "already has a production branch" in refused.stderr
    assert run("branch", "stage", "shop", "feature", "staging").returncode == 0
    (work.folder / "README").write_text("on main\n")
    git(work.folder, "add", "-A")
    git(work.folder, "commit", "-qm", "main side")
    git(work.folder, "push", app.remote("shop", "admin", app.token), "HEAD:refs/heads/other")
    git(work.folder, "reset", "-q", "--hard", "HEAD~1")
    (work.folder / "README").write_text("on feature\n")
    git(work.folder, "add", "-A")
    git(work.folder, "commit", "-qm", "feature side")
    git(work.folder, "push", "-f", app.remote("shop", "admin", app.token),
        "HEAD:refs/heads/feature")
    conflict = run("branch", "merge", "shop", "feature", "other")
    assert conflict.returncode == 1 and "README" in conflict.stderr


def test_gc_drops_an_old_development_build_and_nothing_of_production(app, live, tmp_path):
    work, first = live
    dev = work.push("old-feature")
    with app.db.transaction() as conn:
        conn.execute("UPDATE builds SET created_at = now() - interval '10 days'")
    dropped = gc.collect(app.svc)
    assert dev["id"] in dropped and first["id"] not in dropped
    assert app.wait_build(dev["id"])["state"] == "dropped"
    assert not app.svc.postgres.exists(dev["database"])
    assert app.wait_build(first["id"])["state"] == "running"
    with app.db.transaction() as conn:
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM events")]
    assert "gc" in kinds


# A full deploy puts its snapshot back only if it took one: a snapshot step that fails
# leaves production as it was, whatever else holds the snapshot's name.

def test_a_snapshot_that_cannot_be_taken_leaves_production_and_its_server_as_they_were(
        app, live):
    work, first = live
    db, _ = production(app)
    # A database already named like the next deploy's snapshot: the copy is refused.
    stale = layout.production_snapshot(app.config, "shop", first["id"] + 1).database
    sql("appliance", f'CREATE DATABASE "{stale}"')
    try:
        work.commit("v2")
        build = work.push()
        assert build["state"] == "failed" and "already exists" in build["reason"], build
        assert sql(db, "SELECT name FROM shop_order") == [("before update",)]
        assert app.wait_build(first["id"])["state"] == "running"
    finally:
        sql("appliance", f'DROP DATABASE IF EXISTS "{stale}"')
