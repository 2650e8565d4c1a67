from odoo.tests import TransactionCase


class TestDemoA(TransactionCase):

    def test_create(self):
        self.assertTrue(self.env["demo.a.thing"].create({"name": "a"}).id)
