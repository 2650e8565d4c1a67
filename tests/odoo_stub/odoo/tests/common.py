"""Test case classes and the `tagged` decorator, as addons use them in Odoo.

Every test class carries `test_tags` ({'standard', 'at_install'} unless changed
with @tagged), `test_module` (the addon) and `test_class` (its name), which the
loader filters on.
"""

import logging
import unittest
import uuid

from .. import SUPERUSER_ID, api
from ..modules.registry import Registry

_logger = logging.getLogger(__name__)
_logger.info("Importing test framework")


def tagged(*tags):
    """Add tags to a test class; `-tag` removes one (e.g. `-at_install`)."""
    include = {tag for tag in tags if not tag.startswith("-")}
    exclude = {tag[1:] for tag in tags if tag.startswith("-")}

    def decorator(cls):
        cls.test_tags = (set(getattr(cls, "test_tags", set())) | include) - exclude
        if ("at_install" in cls.test_tags) == ("post_install" in cls.test_tags):
            _logger.warning(
                "A tests should be either at_install or post_install, which is not the case of %r", cls)
        return cls
    return decorator


class BaseCase(unittest.TestCase):
    test_tags = {"standard", "at_install"}
    test_module = None
    test_class = None
    test_sequence = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parts = cls.__module__.split(".")
        cls.test_module = parts[2] if parts[:2] == ["odoo", "addons"] and len(parts) > 2 else None
        cls.test_class = cls.__name__

    @classmethod
    def _open_cursor(cls):
        cls.registry = Registry.instance
        cls.cr = cls.registry.cursor()
        cls.addClassCleanup(cls.cr.close)
        cls.addClassCleanup(cls.cr.rollback)
        cls.env = api.Environment(cls.cr, SUPERUSER_ID, {}, cls.registry)


class TransactionCase(BaseCase):
    """Each class runs in one transaction, rolled back at the end; each test in a
    savepoint rolled back after it, so tests do not see each other's changes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._open_cursor()

    def setUp(self):
        super().setUp()
        savepoint = "test_" + uuid.uuid4().hex
        self.cr.execute(f"SAVEPOINT {savepoint}")
        self.addCleanup(self.cr.execute, f"ROLLBACK TO SAVEPOINT {savepoint}")
        self.env = api.Environment(self.cr, SUPERUSER_ID, {}, self.registry)


class SingleTransactionCase(BaseCase):
    """All tests of the class share one transaction, rolled back at the end."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._open_cursor()
