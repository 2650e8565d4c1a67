from odoo.tests import TransactionCase, tagged


class TestDemoFailAtInstall(TransactionCase):

    def test_assertion_fails(self):
        thing = self.env["demo.fail.thing"].create({"name": "a"})
        self.assertEqual(thing.name, "b", "deliberate assertion failure")

    def test_raises_error(self):
        raise ValueError("deliberate error raised by demo_fail")

    def test_passes(self):
        self.assertEqual(self.env["demo.fail.thing"].search_count([]), 0)


@tagged("post_install", "-at_install")
class TestDemoFailPostInstall(TransactionCase):

    def test_post_install_fails(self):
        self.assertIn("x", "abc", "deliberate post_install failure")
