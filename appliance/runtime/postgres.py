"""PostgreSQL as Odoo's database server: per-project roles and the builds' databases.

Every statement that names a role or a database composes identifiers with psycopg.sql,
never by string formatting.

A project's database is written by hostile code (its builds run as the project's role) or
by an imported dump: its tables may be views, carry triggers, CHECK constraints or row
security policies calling the project's functions. The appliance's own role may create
roles, and so could give itself pg_execute_server_program: nothing of a project's may
ever run with it. So every statement inside a project's database (a query, an UPDATE, a
pg_restore) runs on a connection logged in *as the database's owner*, never as the
appliance's role with SET ROLE (pg_restore --role), which a function undoes with RESET
ROLE. Only pg_dump, which runs none of a database's functions, and statements on the
databases themselves (CREATE, DROP, RENAME) use the appliance's role. The sessions as an
owner, and what the appliance does inside a database, are runtime/postgres_owner.py's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile

import psycopg
from psycopg import sql

from appliance.config import DatabaseConfig
from appliance.errors import SystemFailure
from appliance.runtime.postgres_owner import OwnerSessions
from appliance.store.db import conninfo

log = logging.getLogger(__name__)

# Odoo keeps one connection per worker thread plus cron threads; a runaway build must not
# exhaust the cluster's max_connections for everyone else.
ROLE_CONNECTION_LIMIT = 32
# A transaction left open by a crashed request holds locks forever otherwise.
IDLE_IN_TRANSACTION_TIMEOUT = "10min"
DB_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
# In a pipe, compressing the dump only costs CPU that pg_restore needs: 1 GB took 33 s
# with pg_dump's default compression, 12 s without.
DUMP_ARGS = ("--format=custom", "--compress=0", "--no-owner", "--no-acl")
# A table held exclusively for longer than this fails a live copy instead of hanging it.
LOCK_WAIT_TIMEOUT = "60s"


class Postgres(OwnerSessions):
    """Creates roles and databases with the appliance's administrative connection."""

    def __init__(self, cfg: DatabaseConfig):
        self.cfg = cfg
        self._ensured: dict[str, str] = {}  # role -> password set by this process
        self._passwords: dict[str, str] = {}  # role -> password, to log in as it

    @contextlib.contextmanager
    def _admin(self):
        info = self._admin_info()
        try:
            conn = psycopg.connect(info, autocommit=True)
        except psycopg.OperationalError as exc:
            raise SystemFailure(f"cannot reach PostgreSQL: {exc}") from None
        try:
            yield conn
        finally:
            conn.close()

    def remember_role(self, role: str, password: str) -> None:
        """The project role's password, for connecting as it (see as_owner)."""
        self._passwords[role] = password

    def ensure_role(self, role: str, password: str) -> None:
        """The project's login role: no superuser, no createdb, no createrole. Idempotent;
        a role this process already set up with this password costs nothing."""
        if self._ensured.get(role) == password:
            return
        with self._admin() as conn:
            existing = conn.execute(
                """SELECT r.rolsuper, pg_has_role(r.oid, g.oid, 'MEMBER') AS ours
                   FROM pg_roles r, pg_roles g WHERE r.rolname = %s AND g.rolname = %s""",
                (role, self.cfg.projects_group)).fetchone()
            if existing and (existing[0] or not existing[1]):
                raise SystemFailure(f"a PostgreSQL role {role!r} exists that is not one of "
                                    "the appliance's project roles: refusing to touch it")
            # SUPERUSER may only be named by a superuser, even to say no: a new role has
            # none by default, and an existing one was checked above.
            verb = "ALTER" if existing else "CREATE"
            conn.execute(sql.SQL(
                "{} ROLE {} LOGIN NOCREATEDB NOCREATEROLE CONNECTION LIMIT {} PASSWORD {}")
                .format(sql.SQL(verb), sql.Identifier(role), sql.Literal(ROLE_CONNECTION_LIMIT),
                        sql.Literal(password)))
            conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}")
                         .format(sql.Identifier(role), sql.Literal(IDLE_IN_TRANSACTION_TIMEOUT)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(self.cfg.projects_group), sql.Identifier(role)))
            # The appliance must be a member to create databases owned by the role.
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        self._ensured[role] = password
        self._passwords[role] = password

    def create_database(self, name: str, owner: str, template: str = "template0",
                        replace: bool = False) -> None:
        """A new database owned by the project's role, closed to every other role.
        With replace, a database of that name is dropped first."""
        _check_name(name)
        if replace:
            self.drop_database(name)
        with self._admin() as conn:
            conn.execute(sql.SQL(
                "CREATE DATABASE {} OWNER {} TEMPLATE {} ENCODING 'UTF8' LC_COLLATE 'C' "
                "LC_CTYPE 'C'").format(sql.Identifier(name), sql.Identifier(owner),
                                       sql.Identifier(template)))
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                         .format(sql.Identifier(name)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}")
                         .format(sql.Identifier(name), sql.Identifier(owner)))
        log.info("created database %s owned by %s", name, owner)

    def drop_database(self, name: str) -> None:
        """Drop it, closing its connections first. Missing: nothing to do.

        On PostgreSQL 15, WITH (FORCE) by a role that is not superuser fails when an
        autovacuum worker is in the database (right after a restore, often); a plain DROP
        asks autovacuum to stop and waits for it, so it is the fallback."""
        _check_name(name)
        with self._admin() as conn:
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(name)))
                return
            except psycopg.errors.InsufficientPrivilege:
                pass
            self._terminate(conn, name)
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            except psycopg.errors.ObjectInUse as exc:
                raise self._in_use(conn, name, exc) from None

    def exists(self, name: str) -> bool:
        with self._admin() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone() is not None

    def databases(self, prefix: str) -> list[str]:
        with self._admin() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                (prefix.replace("_", r"\_") + "%",)).fetchall()
        return sorted(row[0] for row in rows)

    def drop_invalid_databases(self, prefix: str) -> list[str]:
        """An interrupted DROP DATABASE leaves datconnlimit = -2: such a database can only
        be dropped. Returns the names dropped."""
        with self._admin() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datconnlimit = -2 "
                                "AND datname LIKE %s",
                                (prefix.replace("_", r"\_") + "%",)).fetchall()
        names = [row[0] for row in rows]
        for name in names:
            log.warning("dropping invalid database %s left by an interrupted drop", name)
            self.drop_database(name)
        return names

    def _admin_info(self) -> str:
        return self.cfg.admin_dsn or conninfo(self.cfg)

    def _terminate(self, conn, name: str) -> None:
        """Close the sessions on a database that this role may close: those of the roles it
        is a member of (the project roles). Others are left for the caller to report."""
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid() "
                     "AND usesysid IS NOT NULL AND pg_has_role(usesysid, 'USAGE')", (name,))

    def _in_use(self, conn, name: str, exc: Exception) -> SystemFailure:
        sessions = conn.execute("SELECT usename, coalesce(application_name, '') "
                                "FROM pg_stat_activity WHERE datname = %s "
                                "AND pid <> pg_backend_pid()", (name,)).fetchall()
        who = ", ".join(f"{user or 'a background process'}" + (f" ({app})" if app else "")
                        for user, app in sessions)
        return SystemFailure(f"database {name} is in use and its sessions could not be "
                             f"closed: {who or exc}")

    def clone_database(self, source: str, target: str, owner: str) -> None:
        """An exact copy of an idle database: CREATE DATABASE ... TEMPLATE with
        STRATEGY FILE_COPY (3x faster than WAL_LOG here), closed to every role but owner.
        The source's sessions are closed first; one that cannot be fails the copy."""
        _check_name(source)
        _check_name(target)
        with self._admin() as conn:
            self._terminate(conn, source)
            try:
                conn.execute(sql.SQL(
                    "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY OWNER {}").format(
                        sql.Identifier(target), sql.Identifier(source), sql.Identifier(owner)))
            except psycopg.errors.ObjectInUse as exc:
                raise self._in_use(conn, source, exc) from None
            except psycopg.Error as exc:
                raise SystemFailure(f"cannot copy database {source} to {target}: "
                                    f"{exc}") from None
            self._close_to_others(conn, target, owner)
        log.info("cloned database %s to %s", source, target)

    def _close_to_others(self, conn, name: str, owner: str) -> None:
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                     .format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}")
                     .format(sql.Identifier(name), sql.Identifier(owner)))

    def copy_live_database(self, source: str, target: str, owner: str) -> None:
        """A consistent copy of a database in use, without stopping it: pg_dump (one
        snapshot) piped into pg_restore logged in as `owner`, so that every restored
        object is the project role's and its functions run with that role's rights. Nothing touches the disk; a failure drops the half-made target.
        A directory dump restored with two jobs was no faster on two cores (1 GB: 12-13 s
        either way), and it needs the room on disk."""
        _check_name(source)
        with self._admin() as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (source,)).fetchone():
                raise SystemFailure(f"cannot copy database {source}: it does not exist")
            server = conn.info.server_version // 10000
        dump, restore = client_tool("pg_dump", server), client_tool("pg_restore", server)
        try:
            self.create_database(target, owner)  # never replaces: a name taken fails here
        except psycopg.Error as exc:
            raise SystemFailure(f"cannot create database {target}: {exc}") from None
        try:
            self._dump_restore(dump, restore, source, target, owner)
        except BaseException:
            self.drop_database(target)
            raise
        log.info("copied live database %s to %s", source, target)

    def _dump_restore(self, dump_bin: str, restore_bin: str, source: str, target: str,
                      owner: str) -> None:
        dsn_source, env = self._client(source, "appliance-copy")
        dsn_target, restore_env = self.owner_client(target, owner, "appliance-copy")
        dsn = {source: dsn_source, target: dsn_target}
        restore = None
        with tempfile.TemporaryFile() as dump_errors:
            dump = subprocess.Popen(
                [dump_bin, *DUMP_ARGS, f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
                 f"--dbname={dsn[source]}"],
                stdout=subprocess.PIPE, stderr=dump_errors, env=env)
            try:
                restore = subprocess.run(
                    [restore_bin, "--no-owner", "--no-acl",
                     "--exit-on-error", f"--dbname={dsn[target]}"],
                    stdin=dump.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    env=restore_env)
            finally:
                dump.stdout.close()
                if restore is None or restore.returncode != 0:
                    dump.kill()  # it may be waiting for a lock, not for the pipe
                dump_code = dump.wait()
            dump_errors.seek(0)
            dumped = dump_errors.read().decode(errors="replace").splitlines()
        restored = restore.stderr.decode(errors="replace").splitlines()
        if dump_code != 0 or restore.returncode != 0:
            # pg_dump's own error first: when it fails, pg_restore only sees a short file.
            detail = (_last_messages(dumped) if dump_code != 0 else []) + \
                _last_messages(restored)
            raise SystemFailure(f"copying database {source} to {target} failed: "
                                + ("; ".join(detail) or f"pg_dump exit {dump_code}, "
                                   f"pg_restore exit {restore.returncode}"))
        for line in dumped + restored:
            log.debug("copy %s to %s: %s", source, target, line)

    def restore_dump(self, stream, target: str, owner: str) -> None:
        """Load a pg_dump custom-format dump read from `stream` (a binary file object,
        e.g. a pipe from restic) into the existing, empty database `target`, every
        object `owner`'s, stopping at the first error. Nothing is
        written to disk on the way; pg_restore logs in as `owner` (a dump's functions
        run as the project's role). Raises SystemFailure with pg_restore's own message."""
        _check_name(target)
        with self._admin() as conn:
            server = conn.info.server_version // 10000
        dsn, env = self.owner_client(target, owner, "appliance-restore")
        command = [client_tool("pg_restore", server), "--no-owner", "--no-acl",
                   "--exit-on-error", f"--dbname={dsn}"]
        done = subprocess.run(command, stdin=stream, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        lines = done.stderr.decode(errors="replace").splitlines()
        if done.returncode != 0:
            raise SystemFailure(f"restoring the dump into {target} failed: "
                                + ("; ".join(_last_messages(lines))
                                   or f"pg_restore exit {done.returncode}"))
        log.info("restored a dump into %s", target)

    def _client(self, database: str, application: str) -> tuple[str, dict]:
        """A client tool's connection string for `database` and its environment: the
        password in PGPASSWORD, never on a command line, where ps shows it."""
        params = psycopg.conninfo.conninfo_to_dict(self._admin_info())
        env = dict(os.environ)
        if params.get("password"):
            env["PGPASSWORD"] = str(params.pop("password"))
        params.update(dbname=database, application_name=application)
        return psycopg.conninfo.make_conninfo(**params), env

    def rename_database(self, old: str, new: str) -> None:
        """Rename, closing its sessions first."""
        _check_name(old)
        _check_name(new)
        with self._admin() as conn:
            self._terminate(conn, old)
            try:
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}")
                             .format(sql.Identifier(old), sql.Identifier(new)))
            except psycopg.errors.ObjectInUse as exc:
                raise self._in_use(conn, old, exc) from None
            except psycopg.Error as exc:
                raise SystemFailure(f"cannot rename database {old} to {new}: {exc}") from None
        log.info("renamed database %s to %s", old, new)

    def database_size(self, name: str) -> int:
        """Bytes on disk, as pg_database_size counts them."""
        with self._admin() as conn:
            row = conn.execute("SELECT pg_database_size(oid) FROM pg_database "
                               "WHERE datname = %s", (name,)).fetchone()
        if row is None:
            raise SystemFailure(f"no database {name}")
        return row[0]



def client_tool(name: str, server_major: int) -> str:
    """The pg_dump or pg_restore of the server's major version: Debian installs each
    version under /usr/lib/postgresql/<major>/bin, and its wrapper in PATH picks the
    newest. A newer client writes SQL an older server may not know; an older one cannot
    read the server's catalogs: both are refused up front."""
    for path in (f"/usr/lib/postgresql/{server_major}/bin/{name}", shutil.which(name)):
        if path and os.path.exists(path):
            break
    else:
        raise SystemFailure(f"{name} not found: install postgresql-client-{server_major}")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\)\s+(\d+)", out)
    client = int(found.group(1)) if found else None
    if client != server_major:
        relation = "newer" if client and client > server_major else "older"
        raise SystemFailure(f"{path} is PostgreSQL {client}, {relation} than the server "
                            f"(PostgreSQL {server_major}): install "
                            f"postgresql-client-{server_major}")
    return path


def _last_messages(lines: list[str]) -> list[str]:
    """The tool's own last two messages, not the SQL it quotes after "Command was:"."""
    own = [line.strip() for line in lines if line.startswith(("pg_dump:", "pg_restore:"))]
    return own[-2:] or [line.strip() for line in lines[-2:]]


def _check_name(name: str) -> None:
    if not DB_NAME.match(name):
        raise ValueError(f"refusing database name {name!r}")

