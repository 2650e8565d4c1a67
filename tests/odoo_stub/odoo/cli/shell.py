"""`odoo-bin shell [-d DB] [server options] < script.py`: run a Python script in Odoo.

Non-interactive only: the whole of standard input is executed (as `__main__`)
with `odoo`, `openerp` and, given a database, `env` (superuser environment) and
`self` (its user) in the namespace, as real Odoo 18's shell does when stdin is
not a terminal. On a terminal the stand-in refuses (exit 2): it has no REPL.

Like Odoo: the options come from the command line, `-c` or ODOO_RC (`db_name`
included); the log lines (configuration, "Initiating shutdown" of the server
it starts and stops, the registry loading) go to the logfile or stderr;
`-i`/`-u` are ignored; the transaction is ROLLED BACK after the script (it
must call `env.cr.commit()` to keep its changes); an exception in the script
is not caught: Python prints its traceback on stderr and the exit code is 1
(`sys.exit(n)` in the script exits n). The exit code is 0 otherwise.
"""

import logging
import os
import sys
import time

import odoo

from .. import netsvc
from ..tools import config
from . import server

_logger = logging.getLogger(__name__)
_server_logger = logging.getLogger("odoo.service.server")
_registry_logger = logging.getLogger("odoo.modules.registry")
_loading_logger = logging.getLogger("odoo.modules.loading")

NO_TTY_MESSAGE = (
    "odoo-bin shell: this stand-in has no interactive shell; it only runs a Python "
    "script read from standard input, e.g. `odoo-bin shell -d DB < script.py`\n"
)


def run(args):
    server.parse_args(args)
    netsvc.init_logger(config)
    server.check_root_user()
    if _stdin_is_a_tty():
        sys.stderr.write(NO_TTY_MESSAGE)
        return 2
    server.report_configuration()
    sys.stderr.write(server._REPORTLAB_NOISE)
    sys.stderr.flush()
    _start_and_stop_server()
    local_vars = {"openerp": odoo, "odoo": odoo}
    dbname = config.get("db_name")
    if not dbname:
        _console(local_vars)
        return 0
    registry = _load_registry(dbname)
    from .. import SUPERUSER_ID, api
    with registry.cursor() as cr:
        context = api.Environment(cr, SUPERUSER_ID, {}, registry)["res.users"].context_get()
        env = api.Environment(cr, SUPERUSER_ID, context, registry)
        local_vars["env"] = env
        local_vars["self"] = env.user
        _console(local_vars)
        cr.rollback()
    return 0


def _stdin_is_a_tty():
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _start_and_stop_server():
    """Odoo's shell starts the server with nothing to preload and stops it at once:
    only the data directory and these two lines remain of it."""
    from ..service import server as service
    service.prepare_data_dir([])
    _server_logger.info("Initiating shutdown")
    _server_logger.info("Hit CTRL-C again or send a second signal to force the shutdown.")


def _load_registry(dbname):
    """The registry of the installed modules, without installing or updating any
    (Odoo's shell ignores -i/-u); a database without base is only an error line."""
    from .. import sql_db
    from ..modules import db, loading
    from ..modules.registry import Registry
    netsvc.set_dbname(dbname)
    start = time.time()
    registry = Registry(dbname)
    with sql_db.Cursor(dbname) as cr:
        initialized = db.is_initialized(cr)
    if not initialized:
        _loading_logger.error("Database %s not initialized, you can force it with `-i base`", dbname)
        return registry
    config["init"] = config["update"] = ""
    config["test_enable"] = False
    loading.load_modules(registry, loading.TestReport())
    _registry_logger.info("Registry loaded in %.3fs", time.time() - start)
    return registry


def _console(local_vars):
    local_vars["__name__"] = "__main__"
    exec(sys.stdin.read(), local_vars)  # noqa: S102  (the shell's very purpose)
