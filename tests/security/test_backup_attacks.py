"""Backups, restores and imports attacked by a project's own code and data.

A project's database is written by hostile code: everything a pushed branch holds runs in
its containers as the project's PostgreSQL role, and an imported dump is anyone's SQL. The
appliance's own role is no superuser, but it may create roles and so give itself
pg_execute_server_program (a shell as the postgres user). So whatever the appliance does
in a project's database (counting rows for a backup, restoring a dump for a restore or the
nightly verification, turning crons off after an import, copying production for staging)
must never run the project's functions with the appliance's rights. Each database here
carries one trap: a function that, when it runs as a role able to, grants the project's
role pg_read_server_files; `RESET ROLE` first, which undoes a `SET ROLE` (pg_restore
--role) from inside. The trap firing as the project's role is fine (it fails quietly):
the grant is the proof of a hole.
"""

from __future__ import annotations

import gzip
import os
import subprocess

import psycopg
import pytest

from appliance import layout
from appliance.errors import UserError
from appliance.jobs import backup, backup_verify, production_restore, restores, staging
from appliance.jobs import backup_content as content
from appliance.jobs import backup_copies
from appliance.jobs.containers import build_paths
from appliance.jobs.dump_import import UploadLoader
from appliance.runtime.buildfs import UnsafePath
from appliance.services import Services
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.host import admin_conninfo, db_password, run_prefix
from tests.integration.harness import sql

PROJECT = "bkattack"

ESCALATE = """
CREATE FUNCTION public.escalate() RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    BEGIN
        RESET ROLE;
        EXECUTE format('GRANT pg_read_server_files TO %I', '{role}');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $f$;
CREATE TABLE public.res_users (id serial PRIMARY KEY, login varchar);
INSERT INTO public.res_users (login) VALUES ('admin'), ('portal');
CREATE TABLE public.ir_attachment (id serial PRIMARY KEY, store_fname varchar,
                                   checksum varchar);
CREATE TABLE public.ir_model_data (id serial PRIMARY KEY, module varchar, name varchar,
                                   model varchar, res_id integer);
CREATE TABLE public.ir_config_parameter (id serial PRIMARY KEY, key varchar, value text);
INSERT INTO public.ir_config_parameter (key, value) VALUES ('database.uuid', 'u'),
                                                           ('database.secret', 's');
"""
MODULES_TABLE = """
CREATE TABLE public.ir_module_module (id serial PRIMARY KEY, name varchar, state varchar,
                                      latest_version varchar);
INSERT INTO public.ir_module_module (name, state, latest_version)
    VALUES ('base', 'installed', '18.0.1.3');
"""
TRAPS = {
    # Read by a backup (row counts in the dump's snapshot, the manifest's modules) and by
    # every deploy's plan: a view runs its functions as whoever reads it.
    "view": """
        CREATE VIEW public.ir_module_module AS
            SELECT 'base'::varchar AS name, 'installed'::varchar AS state,
                   '18.0.1.3'::varchar AS latest_version WHERE public.escalate();
    """,
    # Restored with the data: the constraint runs on every row COPY loads.
    "check": MODULES_TABLE + """
        CREATE TABLE public.x_trap (v boolean CHECK (public.escalate()));
        INSERT INTO public.x_trap VALUES (true);
    """,
    # Fired by the UPDATE that turns an imported database's crons off.
    "cron trigger": MODULES_TABLE + """
        CREATE TABLE public.ir_cron (id serial PRIMARY KEY, active boolean);
        INSERT INTO public.ir_cron (active) VALUES (true);
        CREATE TABLE public.ir_mail_server (id serial PRIMARY KEY, name varchar,
                                            active boolean);
        INSERT INTO public.ir_mail_server (name, active) VALUES ('relay', true);
        CREATE FUNCTION public.on_cron() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM public.escalate(); RETURN NEW; END $f$;
        CREATE TRIGGER on_cron BEFORE UPDATE ON public.ir_cron
            FOR EACH ROW EXECUTE FUNCTION public.on_cron();
    """,
    # Fired when a copy of production gets its own identity.
    "identity trigger": MODULES_TABLE + """
        CREATE FUNCTION public.on_param() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM public.escalate(); RETURN NEW; END $f$;
        CREATE TRIGGER on_param BEFORE UPDATE ON public.ir_config_parameter
            FOR EACH ROW EXECUTE FUNCTION public.on_param();
    """,
}


@pytest.fixture
def svc(config, db):
    with db.transaction() as conn:
        project = projects_store.create_project(conn, PROJECT, "18.0", run_prefix())
        branch, _ = projects_store.ensure_branch(conn, project, "main")
        staging_branch, _ = projects_store.ensure_branch(conn, project, "stage")
        conn.execute("UPDATE branches SET stage = 'staging' WHERE id = %s",
                     (staging_branch["id"],))
    services = Services(config, db)
    services.postgres.ensure_role(project["db_role"], project["db_password"])
    services.project, services.branch = project, branch
    made = []
    services.made = made
    yield services
    for name in made + [layout.production_database(config, PROJECT)]:
        services.postgres.drop_database(name)
    _revoke(project["db_role"])


def _revoke(role: str) -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("REVOKE pg_read_server_files FROM {}").format(
            psycopg.sql.Identifier(role)))


def escalated(svc) -> bool:
    """Did a trap run with rights the project's role does not have?"""
    return sql("appliance", "SELECT pg_has_role(%s, 'pg_read_server_files', 'MEMBER')",
               (svc.project["db_role"],))[0][0]


def hostile_database(svc, name: str, trap: str) -> str:
    """A database of the project's, filled by the project's role as its code would."""
    project = svc.project
    svc.postgres.drop_database(name)
    svc.postgres.create_database(name, project["db_role"])
    svc.made.append(name)
    info = psycopg.conninfo.make_conninfo(admin_conninfo(name), user=project["db_role"],
                                          password=project["db_password"])
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute(ESCALATE.format(role=project["db_role"]) + TRAPS[trap])
    assert not escalated(svc)  # the trap is quiet as long as the project's role runs it
    return name


def production(svc, trap: str, tmp_path) -> dict:
    """A running production build serving a hostile database."""
    name = hostile_database(svc, layout.production_database(svc.config, PROJECT), trap)
    with svc.db.transaction() as conn:
        build = builds_store.enqueue(conn, project=svc.project, branch=svc.branch,
                                     commit="0" * 40, message="prod", author="a <a@b.c>")
        conn.execute("UPDATE builds SET state = 'running' WHERE id = %s", (build["id"],))
        builds_store.update(conn, build["id"], database=name,
                            data_dir=str(tmp_path / "production"))
        return builds_store.get_build(conn, build["id"])


def test_a_backup_of_a_hostile_production_runs_none_of_its_code_as_the_appliance(
        svc, tmp_path):
    production(svc, "view", tmp_path)
    backup.create(svc, svc.project)
    assert not escalated(svc)


def test_the_nightly_verification_restores_a_hostile_backup_as_the_project_role(
        svc, tmp_path):
    production(svc, "check", tmp_path)
    made = backup.create(svc, svc.project)
    assert not escalated(svc)
    result = backup_verify.verify(svc, svc.project, made["id"])
    assert not escalated(svc)
    assert result["details"]["counts"]["res_users"]["restored"] == 2, result


def test_a_restore_of_a_hostile_backup_cannot_reset_pg_restore_s_role(svc, tmp_path):
    production(svc, "check", tmp_path)
    made = backup.create(svc, svc.project)
    target = f"{run_prefix()}bka_restored"
    svc.made.append(target)
    restores.BackupLoader(made).load(svc, target, svc.project["db_role"],
                                     tmp_path / "restored")
    assert not escalated(svc)
    assert sql(target, "SELECT count(*) FROM x_trap") == [(1,)]


def test_an_import_turns_crons_off_without_firing_the_dump_s_triggers_as_the_appliance(
        svc, tmp_path):
    build = production(svc, "cron trigger", tmp_path)
    message = production_restore.after_import(svc, build, build["database"])
    assert not escalated(svc)
    assert "1 scheduled action(s) and 1 outgoing mail server(s) deactivated" in message
    assert sql(build["database"], "SELECT active FROM ir_cron") == [(False,)]


@pytest.mark.parametrize("trap", ["check", "identity trigger"])
def test_a_staging_copy_of_a_hostile_production_runs_its_code_as_the_project_role(
        svc, tmp_path, trap):
    production(svc, trap, tmp_path)
    name = f"{run_prefix()}bka_staging"
    svc.made.append(name)
    paths = build_paths(svc.config, 999, str(tmp_path / "staging"))
    staging.copy_production(svc, svc.project, name, paths)
    assert not escalated(svc)
    assert sql(name, "SELECT value <> 'u' FROM ir_config_parameter "
                     "WHERE key = 'database.uuid'") == [(True,)]


def test_the_trap_is_real_when_the_appliance_runs_it(svc):
    """The premise of this module: run by the appliance's role, the trap escalates."""
    name = hostile_database(svc, f"{run_prefix()}bka_premise", "check")
    sql(name, "SELECT public.escalate()")
    assert escalated(svc)


# -- the filestore moved into place --------------------------------------------------------

def test_an_import_never_moves_its_filestore_through_a_link_production_planted(
        svc, tmp_path):
    """Production's server wrote `filestore` as a link to a host folder before the import
    stopped it: the swap is refused, nothing lands in the host folder, production keeps
    its database."""
    host = tmp_path / "host-etc"
    host.mkdir()
    snap = layout.production_snapshot(svc.config, PROJECT, 7)
    snap.data_dir.mkdir(parents=True)
    (snap.data_dir / "filestore").symlink_to(host)
    live = hostile_database(svc, snap.live_database, "check")
    side = production_restore.side(svc.config, svc.project, 7)
    svc.postgres.create_database(side.database, svc.project["db_role"])
    svc.made.append(side.database)
    (side.files / "ab").mkdir(parents=True)
    (side.files / "ab" / "ab12").write_bytes(b"imported")

    with pytest.raises(UnsafePath):
        production_restore.swap(svc, snap, side)

    assert list(host.iterdir()) == []
    assert svc.postgres.exists(live) and (side.files / "ab" / "ab12").exists()


# -- imports: bombs ----------------------------------------------------------------------

def write_sql_gz_bomb(path, megabytes: int) -> None:
    """A whole, valid Odoo-looking plain dump whose COPY data is megabytes of one letter:
    a few hundred KB gzipped."""
    row = b"x" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b"CREATE TABLE public.ir_module_module (id integer, name varchar);\n"
                  b"CREATE TABLE public.res_users (id integer, login text);\n"
                  b"COPY public.res_users (id, login) FROM stdin;\n")
        for number in range(megabytes):
            out.write(b"%d\t" % number + row + b"\n")
        out.write(b"\\.\n\n-- PostgreSQL database dump complete\n\n")


@pytest.mark.parametrize("kind", ["sql.gz", "custom"])
def test_a_compressed_dump_that_unpacks_to_far_more_than_its_size_is_refused_as_a_bomb(
        tmp_path, kind):
    """Loaded, it would fill PostgreSQL's disk, every project's: refused at the check,
    before anything is made, as a zip bomb is."""
    path = tmp_path / "bomb.sql.gz"
    write_sql_gz_bomb(path, 80)
    if kind == "custom":  # the same SQL, loaded and dumped again with pg_dump's zlib
        path = custom_bomb(tmp_path, path)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UserError, match="bomb"):
        UploadLoader(path, path.name).check("18.0")


def custom_bomb(tmp_path, sql_gz) -> "os.PathLike":
    """The bomb's table in a scratch database, dumped with -Fc (zlib, level 9)."""
    name = f"{run_prefix()}bka_bomb"
    env = {**os.environ, "PGPASSWORD": db_password(), "PGHOST": "127.0.0.1",
           "PGUSER": "appliance"}
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", name],
                       input=gzip.decompress(sql_gz.read_bytes()), check=True, env=env,
                       stdout=subprocess.DEVNULL)
        path = tmp_path / "bomb.dump"
        subprocess.run(["pg_dump", "-Fc", "-Z9", "--no-owner", "-f", str(path), name],
                       check=True, env=env)
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return path


# -- what a backup stages of the container's folders ---------------------------------------

def test_a_huge_sparse_file_in_the_filestore_is_left_out_of_the_backup_with_a_warning(
        tmp_path):
    """A container can make a file of a terabyte that takes no disk: restic would read a
    terabyte of zeros, and every restore (the nightly verification's too) would write
    it out whole. It is left out, and the backup says so."""
    data = tmp_path / "data"
    files = data / "filestore" / "db" / "ab"
    files.mkdir(parents=True)
    (files / "ab12").write_bytes(b"an attachment")
    with open(files / "huge", "wb") as handle:
        handle.truncate(1 << 40)
    source = content.Source(project={}, branch={}, build={}, database="db", data_dir=data,
                            build_dir=tmp_path / "build")
    staged = content.stage(source, tmp_path / "work")
    assert sorted(os.listdir(tmp_path / "work" / "filestore" / "ab")) == ["ab12"]
    assert staged.files["filestore"] == 1 and staged.bytes["filestore"] < 1 << 20
    assert any("ab/huge" in warning and "sparse" in warning for warning in staged.warnings)


# -- copy targets ----------------------------------------------------------------------

@pytest.mark.parametrize("inside", ["projects/acme/production/copies", "builds/7/data/x",
                                    "uploads/offsite"])
def test_a_copy_target_inside_the_data_folder_is_refused(config, inside):
    """Containers write parts of the data folder: a repository there could be swapped
    for links the root daemon's restic would follow, and it is not off the box."""
    with pytest.raises(UserError, match="inside the appliance's data folder"):
        backup_copies.check_location(config, str(config.paths.data_dir / inside))


def test_a_rest_location_with_a_password_is_refused_whatever_the_scheme_s_case(config):
    with pytest.raises(UserError, match="password"):
        backup_copies.check_location(config, "rest:HTTPS://backup:s3cret@example.com/repo")
