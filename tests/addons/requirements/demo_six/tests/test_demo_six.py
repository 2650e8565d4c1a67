from odoo.tests import TransactionCase


class TestDemoSix(TransactionCase):

    def test_six_is_importable(self):
        self.assertEqual(self.env["demo.six.thing"].text_type_name(), "str")
