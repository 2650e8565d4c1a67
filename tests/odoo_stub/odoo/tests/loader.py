"""Finding and running the tests of modules, as Odoo does.

The tests of module `m` are the `test_*` submodules imported by `m/tests/__init__.py`;
a test runs when it matches `--test-tags` (default: standard) and the phase
(`at_install` right after the module is loaded, `post_install` once all are).
"""

import importlib
import inspect
import logging
import os
import unittest

from ..modules import module as modules
from ..tools import config
from .result import OdooTestResult
from .tag_selector import TagsSelector

_logger = logging.getLogger(__name__)


def get_test_modules(module):
    """The imported `test_*` submodules of `odoo.addons.<module>.tests`."""
    path = modules.get_module_path(module)
    if not path or not os.path.isdir(os.path.join(path, "tests")):
        return []
    name = f"odoo.addons.{module}.tests"
    try:
        package = importlib.import_module(name)
    except Exception:
        _logger.exception("Can not `import %s`.", name)
        return []
    return [m for n, m in inspect.getmembers(package, inspect.ismodule) if n.startswith("test_")]


def make_suite(module_names, position):
    config_tags = TagsSelector(config.get("test_tags") or "+standard")
    position_tags = TagsSelector(position)
    tests = [
        test
        for module in module_names
        for test_module in get_test_modules(module)
        for test in _flatten(unittest.TestLoader().loadTestsFromModule(test_module))
        if position_tags.check(test) and config_tags.check(test)
    ]
    tests.sort(key=lambda test: getattr(test, "test_sequence", 0))
    return unittest.TestSuite(tests)


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def run_tests(module_names, position):
    """Run the `position` tests of `module_names`; the result counts failures."""
    result = OdooTestResult()
    suite = make_suite(module_names, position)
    modules.current_test = True
    try:
        suite(result)
    finally:
        modules.current_test = False
    return result
