"""Verification of backups against a real production (the stand-in Odoo in Docker, the
host's PostgreSQL, real restic): a good backup verifies, a damaged one fails naming what
is wrong, no scratch database is ever left; plus the weekly repository check and what
`appliance doctor` says of them.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from appliance import doctor, layout
from appliance.jobs import backup, backup_verify
from appliance.services import Services
from appliance.store import backup_checks as checks_store
from appliance.store import backups as backups_store
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.integration.harness import odoo_shell, production_appliance

pytestmark = pytest.mark.docker

# Its own name: project roles are the cluster's, shared with other suites running now.
PROJECT = "vfshop"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with production_appliance(tmp_path_factory.mktemp("verify"), "verify", PROJECT,
                              env={"APPLIANCE_BACKUP_VERIFY": "false"}) as appliance:
        yield appliance


def project(app) -> dict:
    with app.db.transaction() as conn:
        return projects_store.get_project(conn, PROJECT)


def attach(app, content: bytes) -> str:
    """An attachment made by Odoo in production; returns its store_fname."""
    script = (f"a = env['ir.attachment'].create({{'name': 'scan.bin', 'raw': {content!r}}})\n"
              "env.cr.commit()\nprint(a.store_fname)\n")
    result = odoo_shell(app, app.build, script)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def scratch_left(app) -> list[str]:
    return app.svc.postgres.databases(backup_verify.scratch_prefix(app.svc))


def test_a_good_backup_verifies_and_leaves_nothing_behind(app):
    attach(app, b"a delivery note")
    made = backup.create(app.svc, project(app))
    counts = made["manifest"]["appliance"]["counts"]
    assert counts["res_users"] >= 1 and counts["ir_attachment"] >= 1
    assert counts["ir_module_module"] >= 1

    result = backup_verify.verify(app.svc, project(app))

    assert (result["state"], result["ok"], result["backup_id"]) == ("ok", True, made["id"])
    assert result["error"] == "" and result["seconds"] > 0
    details = result["details"]
    assert details["dump"] == {"bytes": made["dump_bytes"], "sha256": made["sha256"]}
    assert details["counts"]["ir_attachment"] == {"expected": counts["ir_attachment"],
                                                  "restored": counts["ir_attachment"]}
    files = made["manifest"]["appliance"]["files"]["filestore"]
    assert details["filestore_files"] == {"expected": files, "restored": files} and files >= 1
    assert details["attachments_checked"] >= 1
    with app.db.transaction() as conn:
        assert backup_verify.latest(conn, made["project_id"]) == result
    assert scratch_left(app) == []
    assert list(backup_verify.verify_dir(app.config).iterdir()) == []


def test_a_file_damaged_before_the_backup_fails_verification_naming_it(app):
    store_fname = attach(app, b"a contract, signed")
    db = layout.database_name(app.config, PROJECT, "production")
    path = layout.production_data_dir(app.config, PROJECT) / "filestore" / db / store_fname
    original = path.read_bytes()
    path.write_bytes(b"a contract, torn")  # the disk, or a bug, damaged it in production
    try:
        made = backup.create(app.svc, project(app))
        result = backup_verify.verify(app.svc, project(app))
    finally:
        path.write_bytes(original)
    assert result["state"] == "failed" and result["backup_id"] == made["id"]
    assert f"filestore/{store_fname}: its content's sha1 is" in result["error"]
    assert "ir_attachment.checksum says" in result["error"]
    assert scratch_left(app) == []


def test_a_manifest_that_the_restore_does_not_match_fails_naming_the_table_and_dump(app):
    made = backup.create(app.svc, project(app))
    manifest = made["manifest"]
    manifest["appliance"]["counts"]["res_users"] += 1
    with app.db.transaction() as conn:
        backups_store.update(conn, made["id"], manifest=manifest, sha256="0" * 64)
    result = backup_verify.verify(app.svc, project(app), made["id"])
    assert result["state"] == "failed"
    assert "res_users: " in result["error"] and "rows restored" in result["error"]
    assert "the backup recorded " + "0" * 64 in result["error"]
    assert scratch_left(app) == []


def test_the_nightly_job_verifies_the_latest_backup_of_every_production(app):
    made = backup.create(app.svc, project(app))
    results = backup_verify.run_nightly(app.svc)
    assert [(r["backup_id"], r["state"]) for r in results] == [(made["id"], "ok")]


def test_a_project_without_a_backup_has_nothing_to_verify(config, db):
    from appliance.errors import UserError
    svc = Services(config, db)
    with db.transaction() as conn:
        other = projects_store.create_project(conn, "nobackup", "18.0", "appl_test_")
        projects_store.ensure_branch(conn, other, "main")
    with pytest.raises(UserError, match="no backup of its production"):
        backup_verify.verify(svc, other)


# -- start-up, the weekly check, and doctor (no Odoo needed) ----------------------------

def test_a_scratch_database_of_a_dead_verification_is_dropped_at_start(config, db):
    svc = Services(config, db)
    owner = config.database.dsn.split("user=")[1].split()[0]  # the appliance's role
    dead = backup_verify.scratch_prefix(svc) + "4194999_7"  # above any pid_max in use
    alive = backup_verify.scratch_prefix(svc) + f"{os.getpid()}_8"
    for name in (dead, alive):
        svc.postgres.create_database(name, owner)
    try:
        assert backup_verify.recover(svc) == [dead]
        assert svc.postgres.databases(backup_verify.scratch_prefix(svc)) == [alive]
    finally:
        for name in (dead, alive):
            svc.postgres.drop_database(name)


def test_the_weekly_check_records_a_damaged_repository_as_failed(config, db):
    svc = Services(config, db)
    repo = backup.repository(svc)
    repo.backup_stdin([os.urandom(100_000)], "database.dump", ["project=x"])
    good = backup_verify.check_repository(svc, "100%")
    assert good["ok"] is True and good["read_data_subset"] == "100%"
    packs = [p for p in (backup.backups_dir(config) / "restic" / "data").rglob("*")
             if p.is_file()]
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.write_bytes(bytes(data))
    bad = backup_verify.check_repository(svc, "100%")
    assert bad["ok"] is False and bad["output"]
    with db.transaction() as conn:
        assert checks_store.latest_check(conn)["id"] == bad["id"]


def test_doctor_reports_a_failed_verification_and_check_red_and_a_long_failing_target(
        config, db):
    with db.transaction() as conn:
        proj = projects_store.create_project(conn, "redshop", "18.0", "appl_test_")
        branch, _ = projects_store.ensure_branch(conn, proj, "main")
        conn.execute("UPDATE branches SET stage = 'production' WHERE id = %s", (branch["id"],))
        build = builds_store.enqueue(conn, project=proj, branch=branch, commit="c" * 40)
        made = backups_store.start(conn, project=proj, branch=branch, build=build,
                                   kind="daily")
        backups_store.finish(conn, made["id"], "done")
        row = checks_store.start_verification(conn, proj["id"], made["id"], os.getpid())
        checks_store.finish_verification(conn, row["id"], False, {},
                                         "filestore/ab/ab12: its content's sha1 is x")
        check = checks_store.start_check(conn, "5%")
        checks_store.finish_check(conn, check["id"], False, "restic check failed: pack x")
        target = checks_store.add_target(conn, "offsite", "sftp:u@h:/r")
        checks_store.target_failed(conn, target["id"], "connection refused")
        conn.execute("UPDATE backup_targets SET failing_since = %s WHERE id = %s",
                     (datetime.now(timezone.utc) - timedelta(days=2), target["id"]))
    found = {c.name: c for c in doctor.backup_checks(config)}
    assert found["backups of redshop"].status == "fail"
    assert "filestore/ab/ab12" in found["backups of redshop"].detail
    assert found["backup repository"].status == "fail"
    assert found["copy target offsite"].status == "warn"
    assert "connection refused" in found["copy target offsite"].detail

    with db.transaction() as conn:
        row = checks_store.start_verification(conn, proj["id"], made["id"], os.getpid())
        checks_store.finish_verification(conn, row["id"], True, {}, "")
        conn.execute("UPDATE backup_targets SET failing_since = now()")
    found = {c.name: c for c in doctor.backup_checks(config)}
    assert found["backups of redshop"].status == "ok"
    assert found["copy target offsite"].status == "ok"  # failing for less than a day

