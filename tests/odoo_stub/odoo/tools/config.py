"""The one place for the server options: command line, odoo.conf file, defaults.

Every option real Odoo 18 accepts on `odoo-bin server` is accepted here (most are
stored and ignored), so a command line that works with real Odoo works with the
stand-in and a typo fails the same way (usage error, exit 2). The config file is
an INI `[options]` section whose keys are the destination names below
(`db_host`, `addons_path`, `smtp_server`...); the command line beats the file.
"""

import argparse
import configparser
import logging
import os

from .. import release

_logger = logging.getLogger(__name__)

STR, INT, FLOAT, FLAG, NOT_FLAG, APPEND, OPTIONAL = (
    "str", "int", "float", "flag", "not_flag", "append", "optional",
)

# (flags, destination, kind, default)
OPTIONS = [
    (("-c", "--config"), "config", STR, None),
    (("-s", "--save"), "save", FLAG, False),
    (("-i", "--init"), "init", STR, ""),
    (("-u", "--update"), "update", STR, ""),
    (("--without-demo",), "without_demo", OPTIONAL, False),
    (("-P", "--import-partial"), "import_partial", STR, ""),
    (("--pidfile",), "pidfile", STR, None),
    (("--addons-path",), "addons_path", STR, None),
    (("--upgrade-path",), "upgrade_path", STR, None),
    (("--load",), "server_wide_modules", STR, "base,web"),
    (("-D", "--data-dir"), "data_dir", STR, os.path.expanduser("~/.local/share/Odoo")),
    (("--http-interface",), "http_interface", STR, ""),
    (("-p", "--http-port"), "http_port", INT, 8069),
    (("--gevent-port", "--longpolling-port"), "gevent_port", INT, 8072),
    (("--no-http",), "http_enable", NOT_FLAG, True),
    (("--proxy-mode",), "proxy_mode", FLAG, False),
    (("--x-sendfile",), "x_sendfile", FLAG, False),
    (("--db-filter",), "dbfilter", STR, ""),
    (("--test-file",), "test_file", STR, None),
    (("--test-enable",), "test_enable", FLAG, False),
    (("--test-tags",), "test_tags", STR, None),
    (("--screencasts",), "screencasts", STR, None),
    (("--screenshots",), "screenshots", STR, "/tmp/odoo_tests"),
    (("--logfile",), "logfile", STR, None),
    (("--syslog",), "syslog", FLAG, False),
    (("--log-handler",), "log_handler", APPEND, [":INFO"]),
    (("--log-web",), "log_web", FLAG, False),
    (("--log-sql",), "log_sql", FLAG, False),
    (("--log-db",), "log_db", STR, ""),
    (("--log-db-level",), "log_db_level", STR, "warning"),
    (("--log-level",), "log_level", STR, "info"),
    (("--email-from",), "email_from", STR, False),
    (("--from-filter",), "from_filter", STR, False),
    (("--smtp",), "smtp_server", STR, "localhost"),
    (("--smtp-port",), "smtp_port", INT, 25),
    (("--smtp-ssl",), "smtp_ssl", FLAG, False),
    (("--smtp-user",), "smtp_user", STR, False),
    (("--smtp-password",), "smtp_password", STR, False),
    (("--smtp-ssl-certificate-filename",), "smtp_ssl_certificate_filename", STR, False),
    (("--smtp-ssl-private-key-filename",), "smtp_ssl_private_key_filename", STR, False),
    (("-d", "--database"), "db_name", STR, False),
    (("-r", "--db_user"), "db_user", STR, False),
    (("-w", "--db_password"), "db_password", STR, False),
    (("--pg_path",), "pg_path", STR, ""),
    (("--db_host",), "db_host", STR, False),
    (("--db_replica_host",), "db_replica_host", STR, False),
    (("--db_port",), "db_port", INT, False),
    (("--db_replica_port",), "db_replica_port", INT, False),
    (("--db_sslmode",), "db_sslmode", STR, "prefer"),
    (("--db_maxconn",), "db_maxconn", INT, 64),
    (("--db_maxconn_gevent",), "db_maxconn_gevent", INT, False),
    (("--db-template",), "db_template", STR, "template0"),
    (("--load-language",), "load_language", STR, None),
    (("-l", "--language"), "language", STR, None),
    (("--i18n-export",), "translate_out", STR, None),
    (("--i18n-import",), "translate_in", STR, None),
    (("--i18n-overwrite",), "overwrite_existing_translations", FLAG, False),
    (("--modules",), "translate_modules", STR, None),
    (("--no-database-list",), "list_db", NOT_FLAG, True),
    (("--dev",), "dev_mode", STR, ""),
    (("--shell-interface",), "shell_interface", STR, None),
    (("--stop-after-init",), "stop_after_init", FLAG, False),
    (("--osv-memory-count-limit",), "osv_memory_count_limit", INT, 0),
    (("--transient-age-limit",), "transient_age_limit", FLOAT, 1.0),
    (("--max-cron-threads",), "max_cron_threads", INT, 2),
    (("--unaccent",), "unaccent", FLAG, False),
    (("--geoip-city-db", "--geoip-db"), "geoip_city_db", STR, None),
    (("--geoip-country-db",), "geoip_country_db", STR, None),
    (("--workers",), "workers", INT, 0),
    (("--limit-memory-soft",), "limit_memory_soft", INT, 2048 * 1024 * 1024),
    (("--limit-memory-soft-gevent",), "limit_memory_soft_gevent", INT, False),
    (("--limit-memory-hard",), "limit_memory_hard", INT, 2560 * 1024 * 1024),
    (("--limit-memory-hard-gevent",), "limit_memory_hard_gevent", INT, False),
    (("--limit-time-cpu",), "limit_time_cpu", INT, 60),
    (("--limit-time-real",), "limit_time_real", INT, 120),
    (("--limit-time-real-cron",), "limit_time_real_cron", INT, -1),
    (("--limit-request",), "limit_request", INT, 65536),
]

_KINDS = {dest: kind for _flags, dest, kind, _default in OPTIONS}
_TYPES = {INT: int, FLOAT: float}


class OptionError(Exception):
    """A bad option value; reported as a usage error (exit 2) like optparse does."""


class Configuration(dict):
    """The merged options (a dict keyed by destination name), plus derived paths."""

    @property
    def root_path(self):
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    @property
    def addons_data_dir(self):
        """`<data_dir>/addons/<series>`, created when possible, as Odoo does."""
        parent = os.path.join(self["data_dir"], "addons")
        path = os.path.join(parent, release.series)
        if not os.path.exists(path):
            try:
                os.makedirs(parent, 0o700, exist_ok=True)
                os.makedirs(path, 0o500, exist_ok=True)
            except OSError:
                _logger.debug("Failed to create addons data dir %s", path)
        return path

    @property
    def filestore_root(self):
        return os.path.join(self["data_dir"], "filestore")

    @property
    def session_dir(self):
        return os.path.join(self["data_dir"], "sessions")

    def filestore(self, dbname):
        return os.path.join(self.filestore_root, dbname)

    def module_list(self, key):
        """`init`/`update` as a list of names."""
        return [name.strip() for name in (self.get(key) or "").split(",") if name.strip()]

    def parse_config(self, args):
        """Merge defaults, the config file and `args` (command line) into self."""
        namespace = build_parser().parse_args(args)
        given = vars(namespace)
        self.clear()
        self.update({dest: _copy(default) for _flags, dest, _kind, default in OPTIONS})
        config_file = given.get("config") or os.environ.get("ODOO_RC")
        if config_file:
            self.update(read_config_file(config_file))
            self["config"] = config_file
        self.update(given)
        _finish(self)


def _copy(value):
    return list(value) if isinstance(value, list) else value


def build_parser(prog="odoo-bin"):
    """The argparse parser; options not given are absent from the namespace."""
    parser = argparse.ArgumentParser(
        prog=prog, argument_default=argparse.SUPPRESS, usage="%(prog)s [server] [options]",
        description="Odoo server stand-in (only what the appliance relies on)",
    )
    parser.add_argument("--version", action="version", version=f"Odoo Server {release.version}")
    for flags, dest, kind, _default in OPTIONS:
        parser.add_argument(*flags, dest=dest, **_argument_kwargs(kind))
    return parser


def _argument_kwargs(kind):
    if kind == FLAG:
        return {"action": "store_true"}
    if kind == NOT_FLAG:
        return {"action": "store_false"}
    if kind == APPEND:
        return {"action": "append"}
    if kind == OPTIONAL:
        return {"nargs": "?", "const": "all"}
    return {"type": _TYPES.get(kind, str)}


def read_config_file(path):
    """The `[options]` section of an odoo.conf, typed like the command line."""
    parser = configparser.RawConfigParser()
    if not parser.read(path):
        return {}
    if not parser.has_section("options"):
        return {}
    return {key: _typed(key, value) for key, value in parser.items("options")}


_BOOLEANS = {"1": True, "yes": True, "on": True, "true": True,
             "0": False, "no": False, "off": False, "false": False, "": False}


def _typed(key, value):
    """A file value as the command line would give it: "True"/"False"/"None" as
    booleans, integers and floats converted (a bad one is a usage error, like
    optparse's), flags (`smtp_ssl`, `proxy_mode`...) as booleans."""
    if value in ("False", "false", "None", "none"):
        return False
    if value in ("True", "true"):
        return True
    kind = _KINDS.get(key)
    if kind in (FLAG, NOT_FLAG) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    if kind in _TYPES:
        try:
            return _TYPES[kind](value)
        except ValueError:
            raise OptionError(f"option {key}: invalid {kind} value: {value!r}") from None
    if kind == APPEND:
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _finish(options):
    """Derived values and checks done after merging, as Odoo does."""
    if options.get("test_tags"):
        options["test_enable"] = True
    options["data_dir"] = os.path.abspath(os.path.expanduser(options["data_dir"]))
    if options.get("addons_path"):
        options["addons_path"] = ",".join(check_addons_path(options["addons_path"]))
    if options.get("log_web"):
        options["log_handler"].append("odoo.http:DEBUG")
    if options.get("log_sql"):
        options["log_handler"].append("odoo.sql_db:DEBUG")


def check_addons_path(value):
    """Absolute addons paths; each must be a folder holding at least one module."""
    paths = []
    for raw in value.split(","):
        path = os.path.abspath(os.path.expanduser(raw.strip()))
        if not os.path.isdir(path):
            raise OptionError(f"option --addons-path: no such directory: {path!r}")
        if not is_addons_path(path):
            raise OptionError(
                f"option --addons-path: the path {raw.strip()!r} is not a valid addons directory"
            )
        paths.append(path)
    return paths


def is_addons_path(path):
    """True when `path` holds a module: a folder with `__init__.py` and a manifest."""
    for name in os.listdir(path):
        folder = os.path.join(path, name)
        if all(os.path.isfile(os.path.join(folder, f)) for f in ("__init__.py", "__manifest__.py")):
            return True
    return False


config = Configuration({dest: _copy(default) for _flags, dest, _kind, default in OPTIONS})
