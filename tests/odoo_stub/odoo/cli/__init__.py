"""Command line: `odoo-bin [command] [options]`, `server` by default."""

from .command import main  # noqa: F401
