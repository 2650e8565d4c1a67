"""Copies of databases and filestores, on the real PostgreSQL and filesystem."""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest

from appliance.errors import SystemFailure, UserError
from appliance.runtime import filestore
from appliance.runtime.postgres import Postgres
from tests.conftest import db_password


@pytest.fixture
def pg(config):
    postgres = Postgres(config.database)
    suffix = secrets.token_hex(3)
    postgres.role = f"appl_copytest_{suffix}"
    postgres.ensure_role(postgres.role, "copy-test-password")
    postgres.names = [f"appl_copytest_{suffix}_{n}" for n in ("src", "dst", "bad")]
    yield postgres
    for name in postgres.names:
        postgres.drop_database(name)
    with connect("appliance") as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{postgres.role}"')


def connect(name, user="appliance", password=None):
    return psycopg.connect(psycopg.conninfo.make_conninfo(
        host="127.0.0.1", dbname=name, user=user, password=password or db_password()),
        autocommit=True)


def as_role(pg, name):
    return connect(name, pg.role, "copy-test-password")


def make_source(pg):
    src = pg.names[0]
    pg.create_database(src, pg.role)
    with as_role(pg, src) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO orders (name) VALUES ('one'), ('two')")
        conn.execute("CREATE TABLE ir_module_module (name text, state text, latest_version text)")
        conn.execute("INSERT INTO ir_module_module VALUES ('shop', 'installed', '18.0.1.0.0'),"
                     " ('gone', 'uninstalled', '18.0.1.0.0')")
    return src


def rows(conn):
    return conn.execute("SELECT name FROM orders ORDER BY id").fetchall()


def test_a_clone_is_identical_writable_by_the_role_and_independent(pg):
    src, dst = make_source(pg), pg.names[1]
    pg.clone_database(src, dst, pg.role)
    with as_role(pg, dst) as conn:
        assert rows(conn) == [("one",), ("two",)]
        conn.execute("INSERT INTO orders (name) VALUES ('copy only')")
    with as_role(pg, src) as conn:
        assert ("copy only",) not in rows(conn)


def test_a_live_copy_is_consistent_while_the_source_is_in_use(pg):
    src, dst = make_source(pg), pg.names[1]
    with as_role(pg, src) as busy:
        busy.autocommit = False
        busy.execute("INSERT INTO orders (name) VALUES ('uncommitted')")
        pg.copy_live_database(src, dst, pg.role)
        busy.rollback()
    with as_role(pg, dst) as conn:
        assert rows(conn) == [("one",), ("two",)]
        conn.execute("INSERT INTO orders (name) VALUES ('the role can write')")
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'")
        assert owner.fetchone()[0] == pg.role


def test_a_failing_copy_leaves_no_target(pg):
    with pytest.raises(SystemFailure):
        pg.copy_live_database("appl_copytest_does_not_exist", pg.names[2], pg.role)
    assert not pg.exists(pg.names[2])


def test_module_versions_reads_the_installed_modules(pg):
    assert pg.module_versions(make_source(pg)) == {"shop": "18.0.1.0.0"}


def test_a_renamed_database_keeps_its_rows(pg):
    src = make_source(pg)
    pg.rename_database(src, pg.names[2])
    assert not pg.exists(src)
    with as_role(pg, pg.names[2]) as conn:
        assert rows(conn) == [("one",), ("two",)]


def test_a_hardlink_copy_shares_inodes_and_deleting_in_the_copy_keeps_the_source(tmp_path):
    source = tmp_path / "fs"
    (source / "ab").mkdir(parents=True)
    (source / "ab" / "ab12").write_bytes(b"data")
    (source / "cd").mkdir()
    (source / "cd" / "cd34").write_bytes(b"more")
    copy = tmp_path / "copy"
    assert filestore.hardlink_copy(source, copy) == 2
    assert os.stat(copy / "ab" / "ab12").st_ino == os.stat(source / "ab" / "ab12").st_ino
    (copy / "ab" / "ab12").unlink()
    assert (source / "ab" / "ab12").read_bytes() == b"data"
    assert filestore.tree_size(source) == 8


def test_replace_tree_puts_a_snapshot_back_exactly(tmp_path):
    live = tmp_path / "live"
    (live / "ab").mkdir(parents=True)
    (live / "ab" / "one").write_bytes(b"1")
    snapshot = tmp_path / "snap"
    filestore.hardlink_copy(live, snapshot)
    (live / "ab" / "two").write_bytes(b"2")
    (live / "ab" / "one").unlink()
    filestore.replace_tree(snapshot, live)
    assert sorted(p.name for p in live.rglob("*") if p.is_file()) == ["one"]
    assert not snapshot.exists()


def test_not_enough_free_disk_is_refused_clearly(tmp_path):
    with pytest.raises(UserError, match="not enough free disk"):
        filestore.check_free_space(tmp_path, 10**18)
