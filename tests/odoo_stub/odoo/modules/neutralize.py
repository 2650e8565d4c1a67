"""Neutralization: the `data/neutralize.sql` of every installed module."""

import logging
import os

from . import module as modules

_logger = logging.getLogger(__name__)


def get_installed_modules(cr):
    """Installed modules, base first, then each after its dependencies (the order
    they load in), so that a module's SQL can rely on what its dependencies' did."""
    cr.execute(
        "SELECT name FROM ir_module_module WHERE state IN ('installed', 'to upgrade', 'to remove')"
    )
    names = [row[0] for row in cr.fetchall()]
    depths = {}
    return sorted(names, key=lambda name: (name != "base", modules.dependency_depth(name, depths), name))


def get_neutralization_queries(names):
    for name in names:
        path = modules.get_module_path(name)
        filename = path and os.path.join(path, "data", "neutralize.sql")
        if filename and os.path.isfile(filename):
            with open(filename, encoding="utf-8") as f:
                yield f.read().strip()


def neutralize_database(cr):
    for query in get_neutralization_queries(get_installed_modules(cr)):
        cr.execute(query)
    _logger.info("Neutralization finished")
