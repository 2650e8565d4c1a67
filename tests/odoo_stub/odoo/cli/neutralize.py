"""`odoo-bin neutralize -d DB [--stdout]`: make a copy of production safe to run.

Runs `data/neutralize.sql` of every installed module (base first, then each
module after its dependencies) in one transaction, or with `--stdout` prints
that SQL between BEGIN and COMMIT and changes nothing. Accepts the server
options (-c, --db_host, -r, -w, --addons-path, --logfile...).
"""

import logging
import sys

from .. import netsvc
from ..tools import config
from . import server

_logger = logging.getLogger(__name__)


def run(args):
    to_stdout = "--stdout" in args
    server.parse_args([arg for arg in args if arg != "--stdout"])
    netsvc.init_logger(config)
    server.check_root_user()
    from ..modules import module as modules  # imports odoo.addons: after the checks
    from ..modules import neutralize
    modules.initialize_sys_path()
    dbnames = [name for name in (config.get("db_name") or "").split(",") if name]
    if not dbnames:
        _logger.error('Neutralize command needs a database name. Use "-d" argument')
        return 1
    if len(dbnames) > 1:
        sys.stderr.write("-d/--database/db_name has multiple database, please provide a single one\n")
        return 1
    dbname = dbnames[0]
    netsvc.set_dbname(dbname)
    if not to_stdout:
        _logger.info("Starting %s database neutralization", dbname)
    from .. import sql_db
    try:
        with sql_db.Cursor(dbname) as cr:
            if to_stdout:
                queries = neutralize.get_neutralization_queries(neutralize.get_installed_modules(cr))
                lines = ["BEGIN;", *(query.rstrip(";") + ";" for query in queries), "COMMIT;"]
                sys.stdout.write("\n".join(lines) + "\n")
            else:
                neutralize.neutralize_database(cr)
    except Exception:
        # like Odoo: one line, no traceback (kept at DEBUG for the stand-in's own use)
        _logger.debug("Neutralization of %s failed", dbname, exc_info=True)
        _logger.critical("An error occurred during the neutralization. THE DATABASE IS NOT NEUTRALIZED!")
        return 1
    return 0
