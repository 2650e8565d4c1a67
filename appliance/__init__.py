"""The Odoo appliance: Odoo.sh for your own server."""

__version__ = "0.1.0"
