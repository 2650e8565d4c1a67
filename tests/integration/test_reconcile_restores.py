"""Start-up reconciliation of a restore or an import into production that a restart of
the appliance cut short: the host's PostgreSQL, real folders, Docker asked for the
build's containers (it has none).

The build is left where the kill would have left it: its steps recorded up to the one
running, the side database and folder (or the swapped-in production) made for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import layout
from appliance.jobs import production_restore, reconcile
from appliance.services import Services
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.integration.harness import sql

pytestmark = pytest.mark.docker

# Its own name: databases and roles are the cluster's, shared with suites running now.
PROJECT = "rcrestore"


@pytest.fixture
def svc(config, db, docker_client):
    services = Services(config, db)
    with db.transaction() as conn:
        project = projects_store.create_project(conn, PROJECT, "18.0", "appl_test_")
    services.postgres.ensure_role(project["db_role"], project["db_password"])
    services.project = project
    yield services
    for name in services.postgres.databases(layout.production_database(config, PROJECT)):
        services.postgres.drop_database(name)


def cut_short(svc, trigger: str, source: dict, done: list[str], skipped: list[str],
              running: str) -> dict:
    """A production restore build whose worker died during step `running`."""
    project = svc.project
    with svc.db.transaction() as conn:
        branch, _ = projects_store.ensure_branch(conn, project, "main")
        build = builds_store.enqueue(conn, project=project, branch=branch, commit="a" * 40,
                                     trigger=trigger, source=source)
        conn.execute("UPDATE builds SET state = 'installing', attempts = 1 WHERE id = %s",
                     (build["id"],))
        builds_store.plan_steps(conn, build["id"], production_restore.STEPS)
        for name in done:
            builds_store.step_finished(conn, build["id"], name, "done", 0.1)
        for name in skipped:
            builds_store.step_finished(conn, build["id"], name, "skipped", 0.0)
        builds_store.step_started(conn, build["id"], running)
        return builds_store.get_build(conn, build["id"])


def make_database(svc, name: str, marker: str) -> None:
    svc.postgres.create_database(name, svc.project["db_role"])
    sql(name, "CREATE TABLE marker (what text)")
    sql(name, "INSERT INTO marker VALUES (%s)", (marker,))


def put_file(folder: Path, content: bytes) -> Path:
    path = folder / "ab" / "ab12"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def state_of(svc, build_id: int) -> dict:
    with svc.db.transaction() as conn:
        return builds_store.get_build(conn, build_id)


def test_a_restore_cut_short_during_its_load_leaves_no_side_database_or_folder(svc, tmp_path):
    live = layout.production_database(svc.config, PROJECT)
    live_files = layout.production_filestore(svc.config, PROJECT)
    make_database(svc, live, "production as it was")
    kept = put_file(live_files, b"production's attachment")
    upload = tmp_path / "uploaded.sql.gz"
    upload.write_bytes(b"an upload the import was to remove")
    build = cut_short(svc, "import", {"file": str(upload), "name": "shop.sql.gz",
                                      "remove_after": True},
                      done=["checkout", "image", "backup"], skipped=[], running="load")
    side = production_restore.side(svc.config, svc.project, build["id"])
    make_database(svc, side.database, "half loaded")
    put_file(side.files, b"half moved")

    report = reconcile.reconcile(svc)

    assert build["id"] in report["failed"]
    assert state_of(svc, build["id"])["state"] == "failed"
    assert not svc.postgres.exists(side.database)
    assert not side.files.exists()
    assert not upload.exists()
    assert sql(live, "SELECT what FROM marker") == [("production as it was",)]
    assert kept.read_bytes() == b"production's attachment"


def test_a_restore_into_a_production_without_database_cut_short_after_the_swap_leaves_none(
        svc):
    live = layout.production_database(svc.config, PROJECT)
    live_files = layout.production_filestore(svc.config, PROJECT)
    build = cut_short(svc, "restore", {"backup": 1},
                      done=["checkout", "image", "load", "plan", "maintenance", "swap"],
                      skipped=["backup", "snapshot"], running="update")
    with svc.db.transaction() as conn:
        builds_store.update(conn, build["id"], deploy="restore", database=live)
    make_database(svc, live, "half restored")  # what the swap renamed into place
    put_file(live_files, b"restored attachment")

    report = reconcile.reconcile(svc)

    assert build["id"] in report["failed"]
    assert not svc.postgres.exists(live)
    assert not live_files.exists()
    side = production_restore.side(svc.config, svc.project, build["id"])
    assert not svc.postgres.exists(side.database) and not side.files.exists()


def test_a_restore_cut_short_before_its_swap_keeps_the_production_it_did_not_touch(svc):
    live = layout.production_database(svc.config, PROJECT)
    build = cut_short(svc, "restore", {"backup": 1}, done=["checkout", "image", "backup"],
                      skipped=[], running="load")
    make_database(svc, live, "production as it was")

    reconcile.reconcile(svc)

    assert state_of(svc, build["id"])["state"] == "failed"
    assert sql(live, "SELECT what FROM marker") == [("production as it was",)]
