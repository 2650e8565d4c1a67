"""Logging set up exactly like Odoo's: same format, same file handling.

Format: `%(asctime)s %(pid)s %(levelname)s %(dbname)s %(name)s: %(message)s %(perf_info)s`;
the database name is the current thread's `dbname` attribute (`?` before one is
known); `perf_info` is empty except on werkzeug request lines, so ordinary lines
end with a space. Tracebacks follow the message on unprefixed lines.
"""

import logging
import logging.handlers
import os
import sys
import threading
import warnings

FORMAT = "%(asctime)s %(pid)s %(levelname)s %(dbname)s %(name)s: %(message)s %(perf_info)s"

LEVELS = {
    "debug": logging.DEBUG, "debug_sql": logging.DEBUG, "debug_rpc": logging.DEBUG,
    "debug_rpc_answer": logging.DEBUG, "info": logging.INFO, "test": logging.INFO,
    "runbot": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
    "critical": logging.CRITICAL, "notset": logging.NOTSET,
}


class DBFormatter(logging.Formatter):
    """Adds the pid, the current database and the perf info to every record."""

    def format(self, record):
        record.pid = os.getpid()
        record.dbname = getattr(threading.current_thread(), "dbname", "?")
        if not hasattr(record, "perf_info"):
            record.perf_info = ""
        return super().format(record)


def set_dbname(dbname):
    """Mark the current thread as working on `dbname` (shown in its log lines)."""
    threading.current_thread().dbname = dbname or "?"


def init_logger(options):
    """Configure the root logger from the options (logfile, log levels)."""
    handler = _make_handler(options.get("logfile"))
    handler.setFormatter(DBFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(str(options.get("log_level") or "info").lower(), logging.INFO))
    for spec in options.get("log_handler") or []:
        _apply_log_handler(spec)
    logging.captureWarnings(True)
    # like Odoo: deprecations shown once per place, other categories (ResourceWarning
    # of an SMTP connection left open after a failure...) stay ignored
    warnings.simplefilter("default", category=DeprecationWarning)


def _make_handler(logfile):
    if not logfile:
        return logging.StreamHandler(sys.stderr)
    try:
        dirname = os.path.dirname(logfile)
        if dirname and not os.path.isdir(dirname):
            os.makedirs(dirname)
        return logging.handlers.WatchedFileHandler(logfile)
    except OSError:
        sys.stderr.write("ERROR: couldn't create the logfile directory. Logging to the standard output.\n")
        return logging.StreamHandler(sys.stdout)


def _apply_log_handler(spec):
    prefix, _sep, level = spec.rpartition(":")
    level_value = LEVELS.get(level.lower(), logging.getLevelName(level.upper()))
    if isinstance(level_value, int):
        logging.getLogger(prefix or None).setLevel(level_value)
