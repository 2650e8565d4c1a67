"""`odoo-bin server`: check the environment, prepare the database, serve."""

import getpass
import logging
import os
import sys

from .. import netsvc, release
from ..tools import config
from ..tools.config import OptionError

_logger = logging.getLogger("odoo")

# Written by reportlab (a C library) at every start of real Odoo: kept so that log
# readers are tested against it.
_REPORTLAB_NOISE = "Warn: Can't find .pfb for face 'Courier'\n"


def check_root_user():
    """Refuse root. Real Odoo only warns; the stand-in fails so that tests catch
    a container running as root."""
    if os.name == "posix" and os.geteuid() == 0:
        _logger.critical("Running as user 'root' is a security risk.")
        sys.exit(1)


def check_postgres_user():
    if config.get("db_user") == "postgres":
        _logger.critical("Using the database user 'postgres' is a security risk, aborting.")
        sys.exit(1)


def report_configuration():
    from ..modules import module as modules  # imports odoo.addons: after the checks
    _logger.info("Odoo version %s", release.version)
    if config.get("config") and os.path.isfile(config["config"]):
        _logger.info("Using configuration file at %s", os.path.abspath(config["config"]))
    _logger.info("addons paths: %s", modules.initialize_sys_path())
    host = config.get("db_host") or os.environ.get("PGHOST", "default")
    port = config.get("db_port") or os.environ.get("PGPORT", "default")
    user = config.get("db_user") or os.environ.get("PGUSER") or getpass.getuser()
    _logger.info("database: %s@%s:%s", user, host, port)


def parse_args(args):
    try:
        config.parse_config(args)
    except OptionError as exc:
        sys.stderr.write(f"Usage: odoo-bin server [options]\n\nodoo-bin: error: {exc}\n")
        sys.exit(2)


def run(args):
    parse_args(args)
    netsvc.init_logger(config)
    check_root_user()
    check_postgres_user()
    report_configuration()
    sys.stderr.write(_REPORTLAB_NOISE)
    sys.stderr.flush()
    dbnames = [name for name in (config.get("db_name") or "").split(",") if name]
    if dbnames:
        from .. import sql_db
        for dbname in dbnames:
            sql_db.ensure_database(dbname)
    elif config.get("init") or config.get("update"):
        _logger.error("-i and -u need a database (-d)")
    from ..service import server
    rc = server.start(preload=dbnames, stop=config.get("stop_after_init"))
    return rc & 0xFF if rc < 0 else rc
