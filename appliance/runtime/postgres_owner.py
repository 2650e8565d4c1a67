"""Inside a project's database: sessions as its owner, and the few statements the
appliance runs there (what Odoo has installed, a copy's new identity, its mail servers,
crons off after an import).

A project's database is written by hostile code (its builds run as the project's role) or
by an imported dump: its tables may be views, carry triggers, CHECK constraints or row
security policies calling the project's functions. The appliance's own role may create
roles, and so could give itself pg_execute_server_program: nothing of a project's may
ever run with it. So every statement here runs on a connection logged in *as the
database's owner*, never as the appliance's role with SET ROLE (which a function undoes
with RESET ROLE). runtime/postgres.Postgres takes these methods from OwnerSessions.
"""

from __future__ import annotations

import logging
import os

import psycopg

from appliance.errors import SystemFailure
from appliance.store.db import conninfo

log = logging.getLogger(__name__)


class OwnerSessions:
    """Methods of Postgres that work inside a project's database, as its owner. They use
    the class's `cfg`, `_passwords`, `_admin()` and `_admin_info()`."""

    def owner_connection(self, database: str, application: str = "appliance"):
        """An autocommit connection to a project's database logged in as its owner (see
        the module's doc)."""
        with self._admin() as conn:
            row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                               "WHERE datname = %s", (database,)).fetchone()
        if row is None:
            raise SystemFailure(f"cannot connect to database {database}: it does not exist")
        return self.as_owner(database, row[0], application)

    def as_owner(self, database: str, owner: str, application: str = "appliance"):
        """An autocommit connection to `database` logged in as the project role `owner`."""
        params = psycopg.conninfo.conninfo_to_dict(self._admin_info())
        params.update(dbname=database, user=owner, password=self._password(owner),
                      application_name=application)
        try:
            return psycopg.connect(psycopg.conninfo.make_conninfo(**params), autocommit=True)
        except psycopg.OperationalError as exc:
            raise SystemFailure(f"cannot connect to database {database} as {owner}: "
                                f"{exc}") from None

    def owner_client(self, database: str, owner: str, application: str) -> tuple[str, dict]:
        """A client tool's connection string for `database` as `owner`, and its
        environment (the password in PGPASSWORD)."""
        params = psycopg.conninfo.conninfo_to_dict(self._admin_info())
        params.pop("password", None)
        params.update(dbname=database, user=owner, application_name=application)
        env = {**os.environ, "PGPASSWORD": self._password(owner)}
        return psycopg.conninfo.make_conninfo(**params), env

    def _password(self, role: str) -> str:
        """The project role's password: set or remembered by this process, else the one
        its project keeps in the appliance's state. Never the appliance's own role."""
        if role in self._passwords:
            return self._passwords[role]
        with psycopg.connect(conninfo(self.cfg)) as conn:
            row = conn.execute("SELECT db_password FROM projects WHERE db_role = %s",
                               (role,)).fetchone()
        if row is None:
            raise SystemFailure(f"{role} is not a project's role: the appliance does not "
                                "run statements in its databases")
        self._passwords[role] = row[0]
        return row[0]

    def module_versions(self, database: str) -> dict[str, str]:
        """{module: installed version} of an Odoo database ({} when it has none)."""
        with self.owner_connection(database) as conn:
            if not _has_table(conn, "ir_module_module"):
                return {}
            rows = conn.execute("SELECT name, latest_version FROM ir_module_module "
                                "WHERE state = 'installed'").fetchall()
        return {name: version or "" for name, version in rows}

    def new_identity(self, database: str) -> None:
        """A copy is another database: a new uuid and secret, as `db duplicate` gives."""
        with self.owner_connection(database) as conn:
            if not _has_table(conn, "ir_config_parameter"):
                return
            for key in ("database.uuid", "database.secret"):
                conn.execute("UPDATE ir_config_parameter SET value = gen_random_uuid()::text "
                             "WHERE key = %s", (key,))

    def use_only_mail_server(self, database: str, server: dict) -> None:
        """Odoo in this database sends through `server` (name, smtp_host, smtp_port,
        smtp_user, smtp_pass) and no other: every other outgoing server is made inactive
        (neutralize's dummy one too), this one is made or updated and first in order."""
        with self.owner_connection(database) as conn, conn.transaction():
            if not _has_table(conn, "ir_mail_server"):
                return
            conn.execute("UPDATE ir_mail_server SET active = false WHERE name <> %(name)s",
                         server)
            updated = conn.execute(
                """UPDATE ir_mail_server SET smtp_host = %(smtp_host)s,
                          smtp_port = %(smtp_port)s, smtp_user = %(smtp_user)s,
                          smtp_pass = %(smtp_pass)s, smtp_encryption = 'none',
                          smtp_authentication = 'login', from_filter = NULL, sequence = 0,
                          active = true
                   WHERE name = %(name)s""", server).rowcount
            if not updated:
                conn.execute(
                    """INSERT INTO ir_mail_server (name, smtp_host, smtp_port, smtp_user,
                           smtp_pass, smtp_encryption, smtp_authentication, sequence, active)
                       VALUES (%(name)s, %(smtp_host)s, %(smtp_port)s, %(smtp_user)s,
                               %(smtp_pass)s, 'none', 'login', 0, true)""", server)
            # Queued mail and templates pinned to a server now inactive would fail (Odoo
            # refuses an archived server): unpinned, they take the catcher.
            for table in ("mail_mail", "mail_template"):
                if _has_table(conn, table):
                    conn.execute(f"UPDATE {table} SET mail_server_id = NULL "
                                 "WHERE mail_server_id IS NOT NULL")

    def deactivate_crons_and_mail_servers(self, database: str) -> tuple[int, int]:
        """What Odoo.sh does to an imported database: its scheduled actions (but Odoo's
        own garbage collection, base.autovacuum_job) and its outgoing mail servers are
        made inactive. Returns how many of each were active."""
        with self.owner_connection(database) as conn, conn.transaction():
            crons = servers = 0
            if _has_table(conn, "ir_cron"):
                crons = conn.execute(
                    """UPDATE ir_cron SET active = false WHERE active AND id NOT IN (
                           SELECT res_id FROM ir_model_data WHERE model = 'ir.cron'
                           AND module = 'base' AND name = 'autovacuum_job')""").rowcount
            if _has_table(conn, "ir_mail_server"):
                servers = conn.execute("UPDATE ir_mail_server SET active = false "
                                       "WHERE active").rowcount
        log.info("%s: %s scheduled action(s) and %s outgoing mail server(s) deactivated",
                 database, crons, servers)
        return crons, servers


def _has_table(conn, name: str) -> bool:
    """Has this database the table (an Odoo database may lack a module's)?"""
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None
