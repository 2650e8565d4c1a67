"""Bootstrap of an empty database: the tables needed before `base` can load.

The rest of base's schema (ir_config_parameter, res_users, ir_cron,
ir_mail_server, ir_attachment, ir_model_access...) is created by base's models
when base is installed, like any other module's tables.
"""

import logging

from . import module as modules

_logger = logging.getLogger(__name__)

_BOOTSTRAP_SQL = """
CREATE TABLE ir_module_module (
    id serial PRIMARY KEY,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp,
    name varchar NOT NULL,
    shortdesc varchar,
    author varchar,
    summary varchar,
    state varchar DEFAULT 'uninstalled',
    latest_version varchar,
    demo bool DEFAULT false,
    CONSTRAINT ir_module_module_name_uniq UNIQUE (name)
);
CREATE TABLE ir_model_data (
    id serial PRIMARY KEY,
    create_uid int4, create_date timestamp, write_uid int4, write_date timestamp,
    module varchar NOT NULL,
    name varchar NOT NULL,
    model varchar NOT NULL,
    res_id int4,
    noupdate bool DEFAULT false,
    CONSTRAINT ir_model_data_module_name_uniq UNIQUE (module, name)
);
"""


def is_initialized(cr):
    cr.execute("SELECT to_regclass('ir_module_module') IS NOT NULL")
    return cr.fetchone()[0]


def initialize(cr, demo):
    """Create the bootstrap tables and mark base to install (with demo data or not)."""
    _logger.info("init db")
    cr.execute(_BOOTSTRAP_SQL)
    manifest = modules.get_manifest("base")
    cr.execute(
        "INSERT INTO ir_module_module (name, shortdesc, author, state, demo, create_date, write_date) "
        "VALUES ('base', %s, %s, 'to install', %s, now() at time zone 'UTC', now() at time zone 'UTC')",
        (manifest["name"], manifest["author"], demo),
    )
