"""Copies of databases and filestores, on the real PostgreSQL and filesystem."""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest

from appliance.errors import SystemFailure, UserError
from appliance.runtime import filestore, postgres
from appliance.runtime.postgres import Postgres
from tests.host import db_password

pytestmark = pytest.mark.slow  # databases and filestores copied, dumped and restored

ROLE_PASSWORD = "copy-test-password"


@pytest.fixture
def pg(config):
    """The adapter, a scratch project role and database names unique to this test."""
    adapter = Postgres(config.database)
    prefix = f"appl_copytest_{secrets.token_hex(3)}"
    adapter.role = prefix
    adapter.outsider = f"{prefix}_outsider"
    adapter.ensure_role(adapter.role, ROLE_PASSWORD)
    adapter.src, adapter.dst, adapter.other = (f"{prefix}_{n}" for n in ("src", "dst", "other"))
    yield adapter
    for name in adapter.databases(prefix):
        adapter.drop_database(name)
    with connect("appliance") as conn:
        for role in (adapter.outsider, adapter.role):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def connect(name, user="appliance", password=None):
    return psycopg.connect(psycopg.conninfo.make_conninfo(
        host="127.0.0.1", dbname=name, user=user, password=password or db_password()),
        autocommit=True)


def as_role(pg, name):
    return connect(name, pg.role, ROLE_PASSWORD)


def make_source(pg):
    """What Odoo leaves, in small: tables with a sequence, an index of an extension, a
    view, a function, the module list."""
    pg.create_database(pg.src, pg.role)
    with as_role(pg, pg.src) as conn:
        conn.execute("CREATE EXTENSION pg_trgm")
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, name text)")
        conn.execute("CREATE INDEX orders_name ON orders USING gin (name gin_trgm_ops)")
        conn.execute("INSERT INTO orders (name) VALUES ('one'), ('two')")
        conn.execute("CREATE VIEW order_names AS SELECT name FROM orders")
        conn.execute("CREATE FUNCTION shout(text) RETURNS text LANGUAGE sql "
                     "AS 'SELECT upper($1)'")
        conn.execute("CREATE TABLE ir_module_module (name text, state text, "
                     "latest_version text)")
        conn.execute("INSERT INTO ir_module_module VALUES ('shop', 'installed', '18.0.1.0.0'),"
                     " ('gone', 'uninstalled', '18.0.1.0.0'), ('base', 'installed', NULL)")
    return pg.src


def rows(conn):
    return conn.execute("SELECT name FROM orders ORDER BY id").fetchall()


def owners(conn):
    """Owners of everything in the public schema and of the extensions."""
    found = conn.execute("SELECT relowner::regrole::text FROM pg_class "
                         "WHERE relnamespace = 'public'::regnamespace "
                         "UNION SELECT proowner::regrole::text FROM pg_proc "
                         "WHERE pronamespace = 'public'::regnamespace AND proname = 'shout' "
                         "UNION SELECT extowner::regrole::text FROM pg_extension "
                         "WHERE extname = 'pg_trgm'").fetchall()
    return {row[0] for row in found}


def outsider_session(pg, database):
    """A session of a role the appliance is not a member of, so it cannot close it."""
    with connect("appliance") as conn:
        conn.execute(f'CREATE ROLE "{pg.outsider}" LOGIN PASSWORD \'outsider\'')
        conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{pg.outsider}"')
    return connect(database, pg.outsider, "outsider")


# Databases


def test_a_clone_is_identical_owned_by_the_role_writable_and_independent(pg):
    src = make_source(pg)
    pg.clone_database(src, pg.dst, pg.role)
    with as_role(pg, pg.dst) as conn:
        assert rows(conn) == [("one",), ("two",)]
        assert owners(conn) == {pg.role}
        conn.execute("INSERT INTO orders (name) VALUES ('copy only')")
        assert conn.execute("SELECT shout(name) FROM order_names WHERE name % 'copy only'"
                            ).fetchall() == [("COPY ONLY",)]
    with as_role(pg, src) as conn:
        assert ("copy only",) not in rows(conn)
    with connect("appliance") as conn:
        found = conn.execute("SELECT datdba::regrole::text, datistemplate, "
                             "has_database_privilege('public', oid, 'CONNECT') "
                             "FROM pg_database WHERE datname = %s", (pg.dst,)).fetchone()
    assert found == (pg.role, False, False)


def test_a_clone_closes_the_project_roles_sessions_on_the_source(pg):
    src = make_source(pg)
    with as_role(pg, src) as idle:
        pg.clone_database(src, pg.dst, pg.role)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    assert pg.exists(pg.dst)


def test_a_session_the_appliance_cannot_close_fails_clone_and_drop_naming_it(pg):
    src = make_source(pg)
    with outsider_session(pg, src):
        with pytest.raises(SystemFailure, match=f"{src} is in use.*{pg.outsider}"):
            pg.clone_database(src, pg.dst, pg.role)
        with pytest.raises(SystemFailure, match=f"{src} is in use.*{pg.outsider}"):
            pg.drop_database(src)
    assert not pg.exists(pg.dst)
    assert pg.exists(src)


def test_a_live_copy_is_consistent_while_the_source_is_in_use(pg):
    src = make_source(pg)
    with as_role(pg, src) as busy:
        busy.autocommit = False
        busy.execute("INSERT INTO orders (name) VALUES ('uncommitted')")
        pg.copy_live_database(src, pg.dst, pg.role)
        busy.rollback()
    with as_role(pg, pg.dst) as conn:
        assert rows(conn) == [("one",), ("two",)]
        assert owners(conn) == {pg.role}
        conn.execute("INSERT INTO orders (name) VALUES ('the role can write')")
        conn.execute("UPDATE ir_module_module SET state = 'to upgrade'")
        assert conn.execute("SELECT shout(name) FROM order_names WHERE name % 'two'"
                            ).fetchall() == [("TWO",)]
    assert pg.module_versions(pg.dst) == {}  # nothing 'installed' left


def test_a_live_copy_that_fails_leaves_no_target_and_says_why(pg, monkeypatch):
    src = make_source(pg)
    monkeypatch.setattr(postgres, "LOCK_WAIT_TIMEOUT", "1s")
    with as_role(pg, src) as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(SystemFailure, match="timeout.*LOCK TABLE public.orders"):
            pg.copy_live_database(src, pg.dst, pg.role)
        locker.rollback()
    assert not pg.exists(pg.dst)
    with pytest.raises(SystemFailure, match="does not exist"):
        pg.copy_live_database(f"{pg.role}_missing", pg.dst, pg.role)
    assert not pg.exists(pg.dst)


def test_a_restore_that_fails_leaves_no_target_and_quotes_pg_restore(pg, monkeypatch):
    src = make_source(pg)
    create = pg.create_database

    def create_with_a_clash(name, owner, **kwargs):
        create(name, owner, **kwargs)
        with as_role(pg, name) as conn:
            conn.execute("CREATE TABLE order_names (clash int)")

    monkeypatch.setattr(pg, "create_database", create_with_a_clash)
    with pytest.raises(SystemFailure, match='pg_restore: error: .*"order_names" already exists'):
        pg.copy_live_database(src, pg.dst, pg.role)
    assert not pg.exists(pg.dst)


def test_a_live_copy_never_replaces_an_existing_database(pg):
    src = make_source(pg)
    pg.create_database(pg.other, pg.role)
    with as_role(pg, pg.other) as conn:
        conn.execute("CREATE TABLE keep (id int)")
    with pytest.raises(SystemFailure, match="already exists"):
        pg.copy_live_database(src, pg.other, pg.role)
    with as_role(pg, pg.other) as conn:
        assert conn.execute("SELECT to_regclass('keep')").fetchone()[0] == "keep"


def test_a_client_of_another_major_version_is_refused():
    with pytest.raises(SystemFailure, match="install postgresql-client-99"):
        postgres.client_tool("pg_dump", 99)


def test_module_versions_reads_the_installed_modules(pg):
    assert pg.module_versions(make_source(pg)) == {"shop": "18.0.1.0.0", "base": ""}
    pg.create_database(pg.other, pg.role)
    assert pg.module_versions(pg.other) == {}


def test_a_renamed_database_keeps_its_rows_and_size(pg):
    src = make_source(pg)
    size = pg.database_size(src)
    assert size > 0
    pg.rename_database(src, pg.other)
    assert not pg.exists(src)
    assert pg.database_size(pg.other) == size
    with as_role(pg, pg.other) as conn:
        assert rows(conn) == [("one",), ("two",)]


# Filestores


def make_tree(root, files):
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def contents(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


FILES = {"ab/ab12": b"data", "cd/cd34": b"more", "cd/ef/deeper": b"nested"}


def test_a_hardlink_copy_shares_inodes_and_deleting_in_the_copy_keeps_the_source(tmp_path):
    source = make_tree(tmp_path / "fs", FILES)
    copy = tmp_path / "snapshots" / "1"
    assert filestore.hardlink_copy(source, copy) == 3
    assert contents(copy) == FILES
    assert os.stat(copy / "ab" / "ab12").st_ino == os.stat(source / "ab" / "ab12").st_ino
    (copy / "ab" / "ab12").unlink()
    assert (source / "ab" / "ab12").read_bytes() == b"data"
    assert filestore.tree_size(source) == 14


def test_a_hardlink_copy_keeps_symbolic_links_as_links(tmp_path):
    source = make_tree(tmp_path / "fs", FILES)
    (source / "cd" / "alias").symlink_to("cd34")
    assert filestore.hardlink_copy(source, tmp_path / "copy") == 3
    assert os.readlink(tmp_path / "copy" / "cd" / "alias") == "cd34"


def test_a_hardlink_copy_never_merges_into_an_existing_tree(tmp_path):
    source = make_tree(tmp_path / "fs", FILES)
    existing = make_tree(tmp_path / "copy", {"mine": b"x"})
    with pytest.raises(FileExistsError):
        filestore.hardlink_copy(source, existing)
    assert contents(existing) == {"mine": b"x"}


def test_a_hardlink_copy_that_fails_leaves_no_partial_target(tmp_path, monkeypatch):
    source = make_tree(tmp_path / "fs", FILES)
    calls = []

    def failing_link(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_link(*args, **kwargs)

    real_link = os.link
    monkeypatch.setattr(os, "link", failing_link)
    with pytest.raises(OSError, match="No space"):
        filestore.hardlink_copy(source, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert contents(source) == FILES


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replace_tree_puts_a_snapshot_back_exactly(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(filestore, "_exchange", lambda a, b: False)
    live = make_tree(tmp_path / "filestore" / "db", FILES)
    snapshot = tmp_path / "snapshots" / "7"
    filestore.hardlink_copy(live, snapshot)
    (live / "ab" / "ab12").unlink()
    make_tree(live, {"ab/new": b"written by the failed update", "zz/zz99": b"z"})
    filestore.replace_tree(snapshot, live)
    assert contents(live) == FILES
    assert not snapshot.exists()
    assert sorted(p.name for p in (tmp_path / "filestore").iterdir()) == ["db"]


def test_replace_tree_without_a_live_tree_moves_the_snapshot_in(tmp_path):
    snapshot = make_tree(tmp_path / "snap", FILES)
    filestore.replace_tree(snapshot, tmp_path / "filestore" / "db")
    assert contents(tmp_path / "filestore" / "db") == FILES
    assert not snapshot.exists()


def test_remove_tree_tolerates_a_missing_path(tmp_path):
    filestore.remove_tree(tmp_path / "never")
    tree = make_tree(tmp_path / "fs", FILES)
    filestore.remove_tree(tree)
    assert not tree.exists()


def test_tree_size_counts_hard_linked_files_once(tmp_path):
    source = make_tree(tmp_path / "fs", FILES)
    filestore.hardlink_copy(source, tmp_path / "both" / "copy")
    source.rename(tmp_path / "both" / "fs")
    assert filestore.tree_size(tmp_path / "both") == 14


def test_not_enough_free_disk_is_refused_clearly(tmp_path):
    filestore.check_free_space(tmp_path, 1)
    with pytest.raises(UserError, match=r"not enough free disk: .* MB needed, .* MB free on "):
        filestore.check_free_space(tmp_path / "not" / "made" / "yet", 10**18)
