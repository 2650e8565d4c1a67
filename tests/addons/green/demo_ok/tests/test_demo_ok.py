import hashlib

from odoo.tests import TransactionCase, tagged


class TestDemoOkAtInstall(TransactionCase):

    def test_create_and_search(self):
        thing = self.env["demo.ok.thing"].create({"name": "Widget", "code": "W1", "quantity": 4})
        self.assertTrue(thing.id)
        found = self.env["demo.ok.thing"].search([("code", "=", "W1")])
        self.assertEqual(found, thing)
        self.assertEqual(found.quantity, 4)

    def test_write_and_unlink(self):
        thing = self.env["demo.ok.thing"].create({"name": "Gadget", "price": 1.5, "quantity": 2})
        thing.write({"price": 2.0})
        self.assertEqual(thing.total, 4.0)
        thing.unlink()
        self.assertFalse(thing.exists())


@tagged("post_install", "-at_install")
class TestDemoOkPostInstall(TransactionCase):

    def test_owner_is_a_user(self):
        admin = self.env.ref("base.user_admin")
        thing = self.env["demo.ok.thing"].create({"name": "Owned", "owner_id": admin.id})
        self.assertEqual(thing.owner_id, admin)
        self.assertIn(thing, self.env["demo.ok.thing"].search([("owner_id", "=", admin.id)]))

    def test_attachment_goes_to_the_filestore(self):
        attachment = self.env["ir.attachment"].create({"name": "hello.txt", "raw": b"hello demo_ok"})
        self.assertEqual(attachment.checksum, hashlib.sha1(b"hello demo_ok").hexdigest())
        self.assertEqual(attachment.raw, b"hello demo_ok")

    def test_database_has_an_identity(self):
        uuid = self.env["ir.config_parameter"].get_param("database.uuid")
        self.assertTrue(uuid)
