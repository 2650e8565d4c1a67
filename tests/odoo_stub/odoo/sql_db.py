"""PostgreSQL access through psycopg2, with Odoo's cursor interface.

Connection settings come from the options (db_host may be a socket directory,
db_password may be absent: libpq then reads PGPASSWORD).
"""

import contextlib
import logging
import uuid

import psycopg2
import psycopg2.extensions

from .tools import config

_logger = logging.getLogger(__name__)


def connection_kwargs(dbname):
    """psycopg2.connect() arguments for `dbname` from the options."""
    kwargs = {"dbname": dbname, "application_name": "odoo-stub"}
    for option, key in (("db_host", "host"), ("db_port", "port"), ("db_user", "user"),
                        ("db_password", "password"), ("db_sslmode", "sslmode")):
        if config.get(option):
            kwargs[key] = config[option]
    return kwargs


def connect(dbname, autocommit=False, **extra):
    cnx = psycopg2.connect(**connection_kwargs(dbname), **extra)
    cnx.autocommit = autocommit
    return cnx


class Cursor:
    """A psycopg2 cursor on its own connection, with Odoo's cursor methods."""

    def __init__(self, dbname):
        self.dbname = dbname
        self._cnx = connect(dbname)
        self._obj = self._cnx.cursor()
        self.closed = False

    def execute(self, query, params=None):
        return self._obj.execute(query, params)

    def dictfetchall(self):
        names = [column.name for column in self._obj.description]
        return [dict(zip(names, row)) for row in self._obj.fetchall()]

    def dictfetchone(self):
        rows = self.dictfetchall()
        return rows[0] if rows else None

    def commit(self):
        self._cnx.commit()

    def rollback(self):
        self._cnx.rollback()

    def close(self):
        if not self.closed:
            self._cnx.close()
            self.closed = True

    @contextlib.contextmanager
    def savepoint(self):
        name = "sp_" + uuid.uuid4().hex
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except Exception:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    def __getattr__(self, name):
        # fetchone, fetchall, fetchmany, rowcount, description, mogrify...
        return getattr(self._obj, name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        self.close()


def database_exists(dbname):
    """Whether `dbname` exists (asked to the database itself: the project's role
    may not be allowed on `postgres`)."""
    try:
        connect(dbname).close()
        return True
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    return False


def ensure_database(dbname):
    """Create `dbname` (template0, UTF8, collation C, pg_trgm) unless it exists.

    In the appliance the database exists, owned by the project's role, which
    usually lacks CREATEDB: then nothing is created.
    """
    try:
        if database_exists(dbname):
            return
    except psycopg2.OperationalError:
        _logger.info("Connection to the database failed")
        raise
    _create_database(dbname)


def _create_database(dbname):
    template = config.get("db_template") or "template0"
    cnx = connect("postgres", autocommit=True)
    try:
        with cnx.cursor() as cr:
            cr.execute(
                f"CREATE DATABASE {_quote(dbname)} ENCODING 'unicode' "
                f"LC_COLLATE 'C' TEMPLATE {_quote(template)}"
            )
    finally:
        cnx.close()
    _logger.info("Create database `%s`.", dbname)
    _create_extensions(dbname)


def _create_extensions(dbname):
    cnx = connect(dbname, autocommit=True)
    try:
        with cnx.cursor() as cr:
            cr.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg2.Error as exc:
        _logger.debug("pg_trgm not created in %s: %s", dbname, exc)
    finally:
        cnx.close()


def _quote(identifier):
    return '"' + identifier.replace('"', '""') + '"'
