from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestDemoB(TransactionCase):

    def test_extension_adds_a_field(self):
        thing = self.env["demo.a.thing"].create({"name": "a"})
        self.assertEqual(thing.colour, "blue")

    def test_link_points_to_demo_a(self):
        thing = self.env["demo.a.thing"].create({"name": "a"})
        link = self.env["demo.b.link"].create({"thing_id": thing.id})
        self.assertEqual(link.thing_id.name, "a")
        self.assertEqual(self.env["demo.b.link"].search([("thing_id", "=", thing.id)]), link)
