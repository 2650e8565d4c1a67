"""The threaded server: HTTP service, preloading the database, waiting for signals.

Exit codes as in Odoo with --stop-after-init: 0 when fine, 1 when tests failed,
255 (-1) when the database could not be initialised. Without --stop-after-init
the `post_load` hooks of the installed modules run first (exit 1 when one raises),
then the server runs until SIGTERM or SIGINT, then stops cleanly and exits 0.
"""

import logging
import os
import signal
import socket
import threading
import time

from .. import netsvc
from ..http import HttpService
from ..modules import loading
from ..modules.registry import Registry
from ..tools import config

_logger = logging.getLogger(__name__)
_registry_logger = logging.getLogger("odoo.modules.registry")
_sql_logger = logging.getLogger("odoo.sql_db")
_result_logger = logging.getLogger("odoo.tests.result")


class ThreadedServer:

    def __init__(self):
        self.http = HttpService()
        self.quit = threading.Event()
        self.signals_received = 0

    def signal_handler(self, signum, _frame):
        self.signals_received += 1
        if self.signals_received > 1:
            os._exit(1)  # second signal: force, as Odoo does
        self.quit.set()

    def run(self, preload, stop):
        signal.signal(signal.SIGTERM, self.signal_handler)
        signal.signal(signal.SIGINT, self.signal_handler)
        if not stop and not run_post_load_hooks(preload):
            return 1
        if config.get("http_enable", True) and (not stop or config.get("test_enable")):
            self.http_spawn()
        rc = preload_registries(preload) if preload else 0
        if not stop:
            while not self.quit.wait(0.1):
                pass
            rc = 0
        self.stop()
        return rc

    def http_spawn(self):
        try:
            interface, port = self.http.start()
        except OSError:
            _logger.exception("HTTP service could not start")
            return
        _logger.info("HTTP service (werkzeug) running on %s:%s", interface or socket.gethostname(), port)

    def stop(self):
        _logger.info("Initiating shutdown")
        _logger.info("Hit CTRL-C again or send a second signal to force the shutdown.")
        self.http.stop()
        _sql_logger.info("ConnectionPool(read/write;used=0/count=0/max=64): Closed 1 connections ")


def prepare_data_dir(dbnames):
    """`<data_dir>/filestore/<db>` and `<data_dir>/sessions`."""
    for path in [config.session_dir, *(config.filestore(db) for db in dbnames)]:
        try:
            os.makedirs(path, 0o700, exist_ok=True)
        except OSError as exc:
            _logger.error("Cannot create %s: %s", path, exc)


def run_post_load_hooks(dbnames):
    """Before serving: the `post_load` hooks of the installed modules. False when one
    raised (logged CRITICAL with its traceback): the server must not start."""
    from ..modules import db, module as modules
    from .. import sql_db
    for dbname in dbnames:
        netsvc.set_dbname(dbname)
        try:
            with sql_db.Cursor(dbname) as cr:
                names = []
                if db.is_initialized(cr):
                    cr.execute("SELECT name FROM ir_module_module WHERE state = 'installed' "
                               "ORDER BY name <> 'base', id")
                    names = [row[0] for row in cr.fetchall()]
        except Exception:
            _logger.debug("No installed modules read from %s before loading it", dbname, exc_info=True)
            continue
        for name in names:
            if not modules.get_manifest(name).get("post_load"):
                continue
            try:
                modules.run_post_load(name)
            except Exception:
                _logger.critical("Failed to run the post_load hook of module %s", name, exc_info=True)
                return False
    return True


def preload_registries(dbnames):
    """Load each database; returns 0, 1 (tests failed) or -1 (initialisation failed)."""
    rc = 0
    for dbname in dbnames:
        netsvc.set_dbname(dbname)
        try:
            rc |= _preload(dbname)
        except Exception:
            _logger.critical("Failed to initialize database `%s`.", dbname, exc_info=True)
            return -1
    return rc


def _preload(dbname):
    start = time.time()
    update_module = bool(config.get("init") or config.get("update"))
    registry = Registry(dbname)
    report = loading.TestReport()
    loading.load_modules(registry, report)
    _registry_logger.info("Registry loaded in %.3fs", time.time() - start)
    if not config.get("test_enable"):
        return 0
    _post_install_tests(registry, report, update_module)
    level = logging.ERROR if report.failed else (logging.WARNING if not report.tests_run else logging.INFO)
    _result_logger.log(level, "%d failed, %d error(s) of %d tests when loading database %r",
                       report.failures, report.errors, report.tests_run, dbname)
    return 1 if report.failed else 0


def _post_install_tests(registry, report, update_module):
    from ..tests import loader  # the test framework is imported only when testing
    start = time.time()
    names = registry.updated_modules if update_module else registry.loaded_modules
    _logger.info("Starting post tests")
    result = loader.run_tests(names, "post_install")
    report.add(result, at_install=False)
    _logger.info("%d post-tests in %.2fs, 0 queries", result.testsRun, time.time() - start)


def start(preload=None, stop=False):
    """Run the server; returns the exit code."""
    prepare_data_dir(preload or [])
    return ThreadedServer().run(preload or [], stop)
