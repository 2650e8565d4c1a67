"""A stand-in for the Odoo 18 server, small enough to read in an evening.

It honours the command line, log format, exit codes, database layout and test
machinery that the appliance relies on (see the contract measured on real Odoo),
using only the standard library and psycopg2. Importing it is cheap: nothing here
imports the ORM or the server until they are used.
"""

from . import release

SUPERUSER_ID = 1
version_info = release.version_info
__version__ = release.version


def _(source, *args, **kwargs):
    """Translation hook: this stand-in has one language."""
    if args or kwargs:
        return source % (args or kwargs)
    return source
