"""`odoo-bin db`: dump and load databases with their filestore, as Odoo 18 does.

    odoo-bin db [-c CONFIG] [-D DATA_DIR] [-r USER] [-w PASSWORD] [--db_host HOST]
                [--db_port PORT] ... {load,dump,duplicate,rename,drop}
    odoo-bin db dump [--format {zip,dump}] DATABASE [DUMP_PATH|-]
    odoo-bin db load [-f] [-n] [DATABASE] DUMP_FILE|URL

dump: a zip with `dump.sql` first (`pg_dump --no-owner`, plain), `manifest.json` (Odoo's
keys) and `filestore/<xx>/<sha1>`; or, with --format dump, pg_dump's custom format.
load: refuses an existing database (exit 1) unless -f; creates it, runs `psql -q -f
dump.sql` (errors pass silently, as in Odoo: only psql's exit status counts) or
`pg_restore --no-owner` for a custom dump, gives the copy a new database.uuid, secret
and create date, and moves the filestore to <data_dir>/filestore/<db>. The PostgreSQL
tools come from --pg_path or PATH, with the connection in PGHOST, PGUSER... as Odoo's
exec_pg_environ sets them. duplicate, rename and drop are not provided (exit 2).
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

from .. import netsvc, release, sql_db
from ..tools import config
from . import server

_logger = logging.getLogger("odoo.service.db")

GLOBAL_OPTIONS = (("-c", "--config"), ("-D", "--data-dir"), ("--addons-path",),
                  ("-r", "--db_user"), ("-w", "--db_password"), ("--pg_path",),
                  ("--db_host",), ("--db_port",), ("--db_sslmode",))


def build_parser():
    parser = argparse.ArgumentParser(prog="odoo-bin db",
                                     description="Create, drop, dump, load databases")
    for flags in GLOBAL_OPTIONS:
        parser.add_argument(*flags, dest=flags[-1].lstrip("-").replace("-", "_"))
    subs = parser.add_subparsers(dest="command")
    load = subs.add_parser("load", help="Load a dump file.",
                           description="Loads a dump file into a new database.")
    load.add_argument("-f", "--force", action="store_true",
                      help="delete `database` database before loading if it exists")
    load.add_argument("-n", "--neutralize", action="store_true",
                      help="neutralize the database after restore")
    load.add_argument("database", nargs="?",
                      help="database to create, defaults to dump file's name")
    load.add_argument("dump_file", help="zip or pg_dump file to load")
    dump = subs.add_parser("dump", help="Create a dump with filestore.",
                           description="Creates a dump file.")
    dump.add_argument("database", help="database to dump")
    dump.add_argument("dump_path", nargs="?", default="-",
                      help="if provided, database is dumped to specified path, otherwise "
                           "or if `-`, dumped to stdout")
    dump.add_argument("--format", choices=("zip", "dump"), default="zip",
                      help="zip (the default) or pg_dump's custom format")
    for name, text in (("duplicate", "Duplicate a database including filestore."),
                       ("rename", "Rename a database including filestore."),
                       ("drop", "Delete a database including filestore")):
        subs.add_parser(name, help=text, add_help=False)
    return parser


def run(args):
    parser = build_parser()
    options = parser.parse_args(args)
    if options.command is None:
        sys.stdout.write(parser.format_help())
        return 1
    if options.command not in ("load", "dump"):
        sys.stderr.write(f"odoo-bin db {options.command}: not supported by this stand-in\n")
        return 2
    server_args = []
    for flags in GLOBAL_OPTIONS:
        value = getattr(options, flags[-1].lstrip("-").replace("-", "_"))
        if value is not None:
            server_args += [flags[-1], value]
    server.parse_args(server_args)
    netsvc.init_logger(config)
    server.check_root_user()
    server.report_configuration()
    return load(options) if options.command == "load" else dump(options)


# -- the PostgreSQL tools, as Odoo's exec_pg_environ and find_pg_tool give them ----------

def pg_environ():
    env = dict(os.environ)
    for option, name in (("db_host", "PGHOST"), ("db_port", "PGPORT"), ("db_user", "PGUSER"),
                         ("db_password", "PGPASSWORD"), ("db_sslmode", "PGSSLMODE")):
        if config.get(option):
            env[name] = str(config[option])
    env["PGAPPNAME"] = "odoo-stub-db"
    return env


def pg_tool(name):
    path = None
    if config.get("pg_path"):
        path = os.path.join(config["pg_path"], name)
    found = shutil.which(name, path=path)
    if not found:
        raise RuntimeError(f"Command `{name}` not found.")
    return found


# -- dump -------------------------------------------------------------------------------

def dump(options):
    _logger.info("DUMP DB: %s format %s %s", options.database, options.format, "")
    stream = sys.stdout.buffer if options.dump_path == "-" else open(options.dump_path, "wb")
    try:
        with stream if stream is not sys.stdout.buffer else _nothing():
            if options.format == "dump":
                command = [pg_tool("pg_dump"), "--no-owner", "--format=c", options.database]
                subprocess.run(command, env=pg_environ(), stdout=stream, check=True)
            else:
                dump_zip(options.database, stream)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        _logger.error("DUMP DB: %s failed: %s", options.database, exc)
        return 1
    return 0


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def dump_zip(dbname, stream):
    with tempfile.TemporaryDirectory() as folder:
        filestore = config.filestore(dbname)
        if os.path.exists(filestore):
            shutil.copytree(filestore, os.path.join(folder, "filestore"))
        with open(os.path.join(folder, "manifest.json"), "w") as handle:
            json.dump(manifest(dbname), handle, indent=4)
        command = [pg_tool("pg_dump"), "--no-owner", f"--file={folder}/dump.sql", dbname]
        subprocess.run(command, env=pg_environ(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT, check=True)
        with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for path in sorted(Path(folder).rglob("*"), key=lambda p: p.name != "dump.sql"):
                if path.is_file():
                    archive.write(path, str(path.relative_to(folder)))


def manifest(dbname):
    with sql_db.Cursor(dbname) as cr:
        server_version = cr._cnx.server_version
        cr.execute("SELECT name, latest_version FROM ir_module_module "
                   "WHERE state = 'installed'")
        modules = dict(cr.fetchall())
    return {"odoo_dump": "1", "db_name": dbname, "version": release.version,
            "version_info": list(release.version_info),
            "major_version": release.major_version,
            "pg_version": "%d.%d" % divmod(server_version / 100, 100), "modules": modules}


# -- load -------------------------------------------------------------------------------

def load(options):
    dbname = options.database or Path(options.dump_file).stem
    try:
        with _fetched(options.dump_file) as dump_file:
            if sql_db.database_exists(dbname):
                if not options.force:
                    sys.stderr.write(f"Target database {dbname} exists, aborting.\n\n"
                                     "\tuse `--force` to delete the existing database "
                                     "anyway.\n")
                    return 1
                drop_database(dbname)
            restore(dbname, dump_file)
    except Exception as exc:  # noqa: BLE001 (as Odoo: one message, exit 1)
        _logger.error("Couldn't restore database %s", dbname, exc_info=True)
        sys.stderr.write(f"Couldn't restore database: {exc}\n")
        return 1
    return 0


class _fetched:
    """A local path to the dump: the path itself, or a URL downloaded to a temp file."""

    def __init__(self, location):
        self.location = location
        self.temp = None

    def __enter__(self):
        if not urllib.parse.urlparse(self.location).scheme:
            sys.stdout.write(f"Restoring {self.location}...\n")
            sys.stdout.flush()
            return self.location
        sys.stdout.write(f"Fetching {self.location}...\n")
        sys.stdout.flush()
        self.temp = tempfile.NamedTemporaryFile(suffix=".zip")
        with urllib.request.urlopen(self.location) as response:
            shutil.copyfileobj(response, self.temp)
        self.temp.flush()
        return self.temp.name

    def __exit__(self, *exc):
        if self.temp is not None:
            self.temp.close()
        return False


def drop_database(dbname):
    cnx = sql_db.connect("postgres", autocommit=True)
    try:
        with cnx.cursor() as cr:
            cr.execute(f"DROP DATABASE {sql_db._quote(dbname)} WITH (FORCE)")
    finally:
        cnx.close()
    shutil.rmtree(config.filestore(dbname), ignore_errors=True)


def restore(dbname, dump_file):
    _logger.info("RESTORING DB: %s", dbname)
    sql_db._create_database(dbname)
    with tempfile.TemporaryDirectory() as folder:
        filestore = None
        if zipfile.is_zipfile(dump_file):
            with zipfile.ZipFile(dump_file) as archive:
                members = [m for m in archive.namelist() if m.startswith("filestore/")]
                archive.extractall(folder, ["dump.sql"] + members)
                if members:
                    filestore = os.path.join(folder, "filestore")
            command = [pg_tool("psql"), f"--dbname={dbname}", "-q", "-f",
                       os.path.join(folder, "dump.sql")]
        else:
            command = [pg_tool("pg_restore"), f"--dbname={dbname}", "--no-owner", dump_file]
        done = subprocess.run(command, env=pg_environ(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError("Couldn't restore database")
        netsvc.set_dbname(dbname)
        with sql_db.Cursor(dbname) as cr:
            new_identity(cr)
        if filestore:
            target = config.filestore(dbname)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(filestore, target)
    _logger.info("RESTORE DB: %s", dbname)


def new_identity(cr):
    """A copy is another database: ir.config_parameter's init(force=True)."""
    cr.execute("SELECT to_regclass('ir_config_parameter') IS NOT NULL")
    if not cr.fetchone()[0]:
        return
    values = {"database.uuid": str(uuid.uuid1()), "database.secret": str(uuid.uuid4()),
              "database.create_date": "now"}
    for key, value in values.items():
        if value == "now":
            cr.execute("UPDATE ir_config_parameter SET value = to_char(now() at time zone "
                       "'UTC', 'YYYY-MM-DD HH24:MI:SS') WHERE key = %s", (key,))
        else:
            cr.execute("UPDATE ir_config_parameter SET value = %s WHERE key = %s",
                       (value, key))
