"""Imports of uploaded dumps into the host's PostgreSQL: a zip, a .sql, a .sql.gz and a
custom dump each load as the project's role; garbage, bombs, escaping paths, another
major version and files cut short are refused with a clear message and leave nothing.

The source is a small database shaped like Odoo's (ir_module_module, res_users, an
attachment table), dumped with the host's pg_dump as a user would.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import zipfile
from pathlib import Path

import psycopg
import pytest

from appliance.errors import UserError
from appliance.jobs.dump_import import UploadLoader
from appliance.services import Services
from appliance.store import projects as projects_store
from tests.host import admin_conninfo, db_password, run_prefix
from tests.integration.harness import sql

PROJECT = "dumpimp"
SOURCE_SQL = """
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL,
                               state varchar, latest_version varchar);
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, note text);
CREATE TABLE ir_attachment (id serial PRIMARY KEY, store_fname varchar, db_datas bytea);
INSERT INTO ir_module_module (name, state, latest_version)
    VALUES ('base', 'installed', '{base}'), ('shop', 'installed', '{major}.1.0.0');
INSERT INTO res_users (login, note)
    SELECT 'user' || g, repeat('x', mod(g, 50)) FROM generate_series(1, 3000) g;
INSERT INTO ir_attachment (store_fname, db_datas) VALUES ('ab/ab12', '\\x00ff');
"""
FILES = {"ab/ab12cd": b"an invoice scan", "0f/0f99": os.urandom(4096)}


def pg_env() -> dict:
    return {**os.environ, "PGPASSWORD": db_password(), "PGHOST": "127.0.0.1",
            "PGUSER": "appliance"}


def make_source(name: str, major: str) -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    sql(name, SOURCE_SQL.format(base=f"{major}.1.3", major=major))


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Dumps of an 18.0 and of a 17.0 database, in every format."""
    folder = tmp_path_factory.mktemp("dumps")
    found = {}
    for major in ("18.0", "17.0"):
        source = f"{run_prefix()}src_{major.replace('.', '_')}"
        make_source(source, major)
        try:
            plain = folder / f"{major}.sql"
            subprocess.run(["pg_dump", "--no-owner", "-f", str(plain), source], check=True,
                           env=pg_env())
            custom = folder / f"{major}.dump"
            subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", str(custom), source],
                           check=True, env=pg_env())
        finally:
            with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
        gz = folder / f"{major}.sql.gz"
        gz.write_bytes(gzip.compress(plain.read_bytes()))
        found[major] = {"sql": plain, "sql.gz": gz, "custom": custom}
    return found


def make_zip(path: Path, dump: Path, major: str = "18.0", files=FILES, extra=()) -> Path:
    manifest = {"odoo_dump": "1", "db_name": "acme", "version": major, "major_version": major,
                "version_info": [int(major.split(".")[0]), 0, 0, "final", 0, ""],
                "pg_version": "15.0", "modules": {"base": f"{major}.1.3"}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(dump, "dump.sql")
        archive.writestr("manifest.json", json.dumps(manifest))
        for relative, data in files.items():
            archive.writestr(f"filestore/{relative}", data)
        for name, data in extra:
            archive.writestr(name, data)
    return path


@pytest.fixture
def svc(config, db):
    with db.transaction() as conn:
        project = projects_store.create_project(conn, PROJECT, "18.0", run_prefix())
    services = Services(config, db)
    services.postgres.ensure_role(project["db_role"], project["db_password"])
    services.project = project
    return services


@pytest.fixture
def target(svc, tmp_path):
    """The database and filestore folder an import makes; dropped after the test."""
    name = f"{run_prefix()}imported"
    svc.postgres.drop_database(name)
    yield name, tmp_path / "filestore" / name
    svc.postgres.drop_database(name)


def load(svc, target, path: Path, version: str = "18.0"):
    loader = UploadLoader(path, path.name)
    loader.check(version)
    return loader.load(svc, target[0], svc.project["db_role"], target[1])


def assert_refused(svc, target, path: Path, message: str, version: str = "18.0"):
    with pytest.raises(UserError, match=message):
        load(svc, target, path, version)
    assert not svc.postgres.exists(target[0])
    assert not target[1].exists()


def owners(database: str) -> set[str]:
    return {row[0] for row in sql(database, "SELECT tableowner FROM pg_tables "
                                            "WHERE schemaname = 'public'")}


@pytest.mark.parametrize("kind", ["sql", "sql.gz", "custom"])
def test_a_plain_gzipped_or_custom_dump_imports_as_the_project_s_role(svc, target, dumps,
                                                                       kind):
    loaded = load(svc, target, dumps["18.0"][kind])

    database, folder = target
    assert sql(database, "SELECT count(*) FROM res_users")[0][0] == 3000
    assert sql(database, "SELECT latest_version FROM ir_module_module WHERE name = 'base'") \
        == [("18.0.1.3",)]
    assert owners(database) == {svc.project["db_role"]}
    assert folder.is_dir() and not any(folder.iterdir())
    assert (loaded.database, loaded.filestore_files, loaded.manifest) == (database, 0, {})
    assert loaded.dump_bytes > 0 and kind in loaded.summary


def test_a_database_manager_zip_imports_its_database_and_filestore(svc, target, dumps,
                                                                   tmp_path):
    path = make_zip(tmp_path / "acme.zip", dumps["18.0"]["sql"])
    loaded = load(svc, target, path)

    database, folder = target
    assert sql(database, "SELECT count(*) FROM res_users")[0][0] == 3000
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()} == FILES
    assert loaded.filestore_files == 2 and loaded.manifest["major_version"] == "18.0"


def test_garbage_is_refused_and_nothing_is_made(svc, target, tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    assert_refused(svc, target, path, "not a database dump")


def test_a_zip_bomb_is_refused_and_nothing_is_made(svc, target, dumps, tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(dumps["18.0"]["sql"], "dump.sql")
        with archive.open("filestore/00/zeros", "w") as out:
            for _ in range(100):
                out.write(bytes(1 << 20))
    assert_refused(svc, target, path, "zip bomb")


def test_a_zip_whose_path_escapes_the_filestore_is_refused(svc, target, dumps, tmp_path):
    path = make_zip(tmp_path / "escape.zip", dumps["18.0"]["sql"],
                    extra=[("filestore/../../../../tmp/escaped", b"owned")])
    assert_refused(svc, target, path, "leaves its folder")


def test_a_zip_of_another_major_version_names_both(svc, target, dumps, tmp_path):
    path = make_zip(tmp_path / "old.zip", dumps["17.0"]["sql"], major="17.0")
    assert_refused(svc, target, path, r"this is a dump of Odoo 17\.0; the project runs 18\.0")


def test_a_plain_dump_of_another_major_version_is_told_by_its_base_module(svc, target,
                                                                          dumps):
    assert_refused(svc, target, dumps["17.0"]["sql.gz"],
                   r"this is a dump of Odoo 17\.0; the project runs 18\.0")


def test_a_truncated_sql_gz_is_refused(svc, target, dumps, tmp_path):
    path = tmp_path / "cut.sql.gz"
    data = dumps["18.0"]["sql.gz"].read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert_refused(svc, target, path, "cut short")


def test_a_truncated_custom_dump_is_refused(svc, target, dumps, tmp_path):
    path = tmp_path / "cut.dump"
    data = dumps["18.0"]["custom"].read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert_refused(svc, target, path, "damaged or cut short")


def test_a_dump_that_is_not_odoo_s_is_refused(svc, target, dumps, tmp_path):
    path = tmp_path / "other.sql"
    path.write_bytes(dumps["18.0"]["sql"].read_bytes().replace(b"res_users", b"customers"))
    assert_refused(svc, target, path, "not an Odoo database")


def test_a_dump_failing_midway_leaves_no_database_and_no_folder(svc, target, dumps,
                                                                tmp_path):
    path = tmp_path / "broken.sql"
    text = dumps["18.0"]["sql"].read_bytes()
    path.write_bytes(text.replace(b"ALTER TABLE", b"ALTER TABLE missing_table_x; ALTER TABLE",
                                  1))
    assert_refused(svc, target, path, "does not load")


def test_a_psql_shell_escape_in_a_dump_is_refused_and_never_run(svc, target, dumps,
                                                                tmp_path):
    marker = tmp_path / "shell-ran"
    path = tmp_path / "escape.sql"
    text = dumps["18.0"]["sql"].read_bytes()
    path.write_bytes(text.replace(b"CREATE TABLE", f"\\! touch {marker}\nCREATE TABLE"
                                  .encode(), 1))
    assert_refused(svc, target, path, r"psql command \\!")
    assert not marker.exists()


def test_a_dump_cannot_borrow_the_appliance_s_rights(svc, target, dumps, tmp_path):
    path = tmp_path / "escalate.sql"
    evil = f"{run_prefix()}evil"
    text = dumps["18.0"]["sql"].read_bytes()
    path.write_bytes(text.replace(b"CREATE TABLE", f"RESET ROLE;\nCREATE ROLE {evil};\n"
                                  "CREATE TABLE".encode(), 1))
    assert_refused(svc, target, path, "permission denied to create role")
    assert not sql("appliance", "SELECT 1 FROM pg_roles WHERE rolname = %s", (evil,))
