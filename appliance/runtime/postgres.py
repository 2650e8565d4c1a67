"""PostgreSQL as Odoo's database server: per-project roles and the builds' databases.

Every statement that names a role or a database composes identifiers with psycopg.sql,
never by string formatting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess

import psycopg
from psycopg import sql

from appliance.config import DatabaseConfig
from appliance.errors import SystemFailure
from appliance.store.db import conninfo

log = logging.getLogger(__name__)

# Odoo keeps one connection per worker thread plus cron threads; a runaway build must not
# exhaust the cluster's max_connections for everyone else.
ROLE_CONNECTION_LIMIT = 32
# A transaction left open by a crashed request holds locks forever otherwise.
IDLE_IN_TRANSACTION_TIMEOUT = "10min"
DB_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


class Postgres:
    """Creates roles and databases with the appliance's administrative connection."""

    def __init__(self, cfg: DatabaseConfig):
        self.cfg = cfg
        self._ensured: dict[str, str] = {}  # role -> password set by this process

    @contextlib.contextmanager
    def _admin(self):
        info = self.cfg.admin_dsn or conninfo(self.cfg)
        try:
            conn = psycopg.connect(info, autocommit=True)
        except psycopg.OperationalError as exc:
            raise SystemFailure(f"cannot reach PostgreSQL: {exc}") from None
        try:
            yield conn
        finally:
            conn.close()

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

    def create_database(self, name: str, owner: str, template: str = "template0",
                        replace: bool = False) -> None:
        """A new database owned by the project's role, closed to every other role.
        With replace, a database of that name is dropped first."""
        _check_name(name)
        with self._admin() as conn:
            if replace:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(name)))
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
        """Drop it, closing its connections first. Missing: nothing to do."""
        _check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

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

    def _terminate(self, conn, name: str) -> None:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    def clone_database(self, source: str, target: str, owner: str) -> None:
        """An exact copy of an idle database: CREATE DATABASE ... TEMPLATE with
        STRATEGY FILE_COPY (3x faster than WAL_LOG here). Its sessions are closed first."""
        _check_name(source)
        _check_name(target)
        with self._admin() as conn:
            self._terminate(conn, source)
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY OWNER {}")
                             .format(sql.Identifier(target), sql.Identifier(source),
                                     sql.Identifier(owner)))
            except psycopg.errors.ObjectInUse as exc:
                raise SystemFailure(f"cannot copy {source}: it is in use ({exc})") from None
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                         .format(sql.Identifier(target)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}")
                         .format(sql.Identifier(target), sql.Identifier(owner)))

    def copy_live_database(self, source: str, target: str, owner: str) -> None:
        """A consistent copy of a database in use, without stopping it: pg_dump (one
        snapshot) piped into pg_restore, objects owned by `owner`. Nothing on disk; a
        failure drops the half-made target."""
        _check_name(source)
        self.create_database(target, owner, replace=True)
        params = psycopg.conninfo.conninfo_to_dict(self.cfg.dsn)
        env = {**os.environ, "PGPASSWORD": self.cfg.password or os.environ.get("PGPASSWORD", "")}
        common = ["-h", str(params.get("host", "127.0.0.1")), "-p", str(params.get("port", 5432)),
                  "-U", str(params.get("user", "appliance"))]
        dump = subprocess.Popen(["pg_dump", "--format=custom", "--no-owner", "--no-acl",
                                 *common, "-d", source], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        restore = subprocess.run(["pg_restore", "--no-owner", "--no-acl", "--role", owner,
                                  "--exit-on-error", *common, "-d", target],
                                 stdin=dump.stdout, capture_output=True, env=env)
        dump.stdout.close()
        dump_errors = dump.stderr.read().decode(errors="replace")
        dump.stderr.close()
        if dump.wait() != 0 or restore.returncode != 0:
            self.drop_database(target)
            errors = (dump_errors + restore.stderr.decode(errors="replace")).strip()
            raise SystemFailure(f"copying {source} failed: {errors.splitlines()[-3:]}")

    def rename_database(self, old: str, new: str) -> None:
        _check_name(old)
        _check_name(new)
        with self._admin() as conn:
            self._terminate(conn, old)
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}")
                         .format(sql.Identifier(old), sql.Identifier(new)))

    def database_size(self, name: str) -> int:
        with self._admin() as conn:
            return conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0]

    def _connect_to(self, database: str):
        info = psycopg.conninfo.make_conninfo(conninfo(self.cfg), dbname=database)
        return psycopg.connect(info, autocommit=True)

    def module_versions(self, database: str) -> dict[str, str]:
        """{module: installed version} of an Odoo database ({} when it has none)."""
        with self._connect_to(database) as conn:
            if conn.execute("SELECT to_regclass('ir_module_module')").fetchone()[0] is None:
                return {}
            rows = conn.execute("SELECT name, latest_version FROM ir_module_module "
                                "WHERE state = 'installed'").fetchall()
        return {name: version or "" for name, version in rows}

    def new_identity(self, database: str) -> None:
        """A copy is another database: a new uuid and secret, as `db duplicate` gives."""
        with self._connect_to(database) as conn:
            if conn.execute("SELECT to_regclass('ir_config_parameter')").fetchone()[0] is None:
                return
            for key in ("database.uuid", "database.secret"):
                conn.execute("UPDATE ir_config_parameter SET value = gen_random_uuid()::text "
                             "WHERE key = %s", (key,))


def _check_name(name: str) -> None:
    if not DB_NAME.match(name):
        raise ValueError(f"refusing database name {name!r}")

