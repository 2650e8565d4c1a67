from odoo.tests import TransactionCase


class TestDemoWarn(TransactionCase):

    def test_create(self):
        thing = self.env["demo.warn.thing"].create({"name": "w", "size": 3})
        self.assertEqual(self.env["demo.warn.thing"].search([("size", ">", 2)]), thing)
