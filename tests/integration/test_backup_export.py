"""Downloads of a real backup (the stand-in Odoo's production, a real restic repository)
and the stand-in's own `odoo-bin db dump`/`db load`, run in the build's image as Odoo
would run them: the database manager's zip the appliance streams loads with `db load`,
and the zip `db dump` makes imports through the appliance's UploadLoader, each giving
the same business rows and filestore.

The pushed branch asks for postgresql-client in its apt.txt: `db dump` and `db load`
run pg_dump and psql, which the test's small runtime image does not hold.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from appliance import layout
from appliance.errors import BackupError
from appliance.jobs import backup, backup_export
from appliance.jobs.dump_import import UploadLoader
from appliance.store import projects as projects_store
from tests.host import STUB_ODOO, db_password, run_prefix
from tests.integration.harness import odoo_shell, production_appliance, sql

pytestmark = pytest.mark.docker

PROJECT = "bkexport"
BUSINESS = {"shop_order": "SELECT name, amount FROM shop_order ORDER BY name, amount",
            "res_users": "SELECT login, active FROM res_users ORDER BY login",
            "ir_attachment": "SELECT name, store_fname, checksum, file_size "
                             "FROM ir_attachment ORDER BY store_fname, name",
            "ir_module_module": "SELECT name, state, latest_version FROM ir_module_module "
                                "ORDER BY name"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # The small test image has no pg_dump: the stand-in's `db dump` needs one.
    with production_appliance(tmp_path_factory.mktemp("export"), "export", PROJECT,
                              files={"apt.txt": "postgresql-client\n"},
                              timeout=600) as appliance:
        _fill(appliance)
        yield appliance


def _fill(app) -> None:
    db, _ = production(app)
    sql(db, "INSERT INTO shop_order (name, amount) VALUES ('exported', 42), ('second', 7)")
    script = ("for n in range(3):\n"
              "    env['ir.attachment'].create({'name': f'scan{n}.bin', "
              "'raw': bytes([n]) * (1000 + n)})\n"
              "env.cr.commit()\n")
    result = odoo_shell(app, app.build, script)
    assert result.returncode == 0, result.stderr[-2000:]


def project(app) -> dict:
    with app.db.transaction() as conn:
        return projects_store.get_project(conn, PROJECT)


def production(app) -> tuple[str, Path]:
    return (layout.database_name(app.config, PROJECT, "production"),
            layout.production_data_dir(app.config, PROJECT))


def business(database: str) -> dict:
    return {table: sql(database, query) for table, query in BUSINESS.items()}


def tree_sha256(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def stub_db(app, work: Path, *args: str, mounts=()) -> subprocess.CompletedProcess:
    """`odoo-bin db ...` of the stand-in in the build's image, as the appliance's role
    (a project role may not create databases), the stand-in's source mounted as in a
    build, `work` at /work."""
    work.chmod(0o777)
    volumes = [f"{STUB_ODOO}:/opt/odoo:ro", f"{work}:/work", *mounts]
    command = ["docker", "run", "--rm", "--network", "host", "-e",
               f"PGPASSWORD={db_password()}"]
    for volume in volumes:
        command += ["-v", volume]
    command += [app.build["image"], "python3", "/opt/odoo/odoo-bin", "db",
                "--db_host", "127.0.0.1", "-r", "appliance", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture
def scratch(app):
    """Names of databases a test makes; dropped after it."""
    names = []
    yield lambda name: names.append(f"{run_prefix()}{name}") or names[-1]
    for name in names:
        app.svc.postgres.drop_database(name)


def test_the_zip_download_loads_with_odoo_bin_db_load_with_identical_data(app, tmp_path,
                                                                        scratch):
    db, data = production(app)
    row = backup.create(app.svc, project(app))
    work = tmp_path / "work"
    work.mkdir()
    with open(work / "backup.zip", "wb") as out:
        for chunk in backup_export.zip_stream(app.svc, row):
            out.write(chunk)

    with zipfile.ZipFile(work / "backup.zip") as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert names[:2] == ["dump.sql", "manifest.json"]
    assert {n for n in names[2:]} == {f"filestore/{p}" for p in tree_sha256(data / "filestore" / db)}

    target = scratch("zipload")
    loaded = stub_db(app, work, "-D", "/work/data", "load", target, "/work/backup.zip")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "Restoring /work/backup.zip..." in loaded.stdout
    assert f"RESTORE DB: {target}" in loaded.stderr
    assert business(target) == business(db)
    assert tree_sha256(work / "data" / "filestore" / target) == tree_sha256(data / "filestore" / db)
    uuid = "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'"
    assert sql(target, uuid) != sql(db, uuid)

    again = stub_db(app, work, "-D", "/work/data", "load", target, "/work/backup.zip")
    assert again.returncode == 1
    assert f"Target database {target} exists, aborting." in again.stderr


def test_a_zip_made_by_odoo_bin_db_dump_imports_through_the_upload_loader(app, tmp_path,
                                                                         scratch):
    db, data = production(app)
    work = tmp_path / "work"
    work.mkdir()
    dumped = stub_db(app, work, "-D", "/prod", "dump", db, "/work/stub.zip",
                     mounts=[f"{data}:/prod:ro"])
    assert dumped.returncode == 0, dumped.stdout + dumped.stderr
    assert f"DUMP DB: {db} format zip" in dumped.stderr
    with zipfile.ZipFile(work / "stub.zip") as archive:
        assert archive.namelist()[0] == "dump.sql"

    loader = UploadLoader(work / "stub.zip", "stub.zip")
    loader.check("18.0")
    target = scratch("stubimport")
    owner = project(app)["db_role"]
    loaded = loader.load(app.svc, target, owner, tmp_path / "filestore")

    assert business(target) == business(db)
    assert tree_sha256(tmp_path / "filestore") == tree_sha256(data / "filestore" / db)
    assert loaded.manifest["db_name"] == db and loaded.filestore_files >= 3
    assert {row[0] for row in sql(target, "SELECT tableowner FROM pg_tables "
                                          "WHERE schemaname = 'public'")} == {owner}


def test_the_native_download_is_the_backup_s_own_dump(app):
    row = backup.create(app.svc, project(app))
    digest, size = hashlib.sha256(), 0
    for chunk in backup_export.dump_stream(app.svc, row):
        digest.update(chunk)
        size += len(chunk)
    assert (digest.hexdigest(), size) == (row["sha256"], row["dump_bytes"])


def test_a_download_failing_midway_ends_in_an_error_not_a_whole_looking_zip(app, tmp_path):
    row = dict(backup.create(app.svc, project(app)), files_snapshot="0" * 64)
    received = bytearray()
    with pytest.raises(BackupError):
        for chunk in backup_export.zip_stream(app.svc, row):
            received += chunk
    assert len(received) > 0  # dump.sql was sent before the filestore failed
    path = tmp_path / "partial.zip"
    path.write_bytes(received)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)
