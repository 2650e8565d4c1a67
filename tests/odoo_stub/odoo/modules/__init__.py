"""Modules: finding, importing, loading into a database (install/update)."""
