"""Test framework for addons: `from odoo.tests import TransactionCase, tagged`."""

from .common import BaseCase, SingleTransactionCase, TransactionCase, tagged  # noqa: F401
