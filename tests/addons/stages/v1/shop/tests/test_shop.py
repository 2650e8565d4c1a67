from odoo.tests import TransactionCase


class TestShop(TransactionCase):

    def test_create_an_order(self):
        order = self.env["shop.order"].create({"name": "TEST-ORDER-1", "amount": 12.5})
        self.assertEqual(self.env["shop.order"].search([("name", "=", "TEST-ORDER-1")]), order)
        self.assertEqual(order.amount, 12.5)
