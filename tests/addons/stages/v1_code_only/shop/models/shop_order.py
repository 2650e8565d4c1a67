from odoo import fields, models


class ShopOrder(models.Model):
    _name = "shop.order"
    _description = "Shop Order"
    _order = "name"

    name = fields.Char(required=True)
    amount = fields.Float()

    def _send_reminders(self):
        """Called by the scheduled action: the orders still to remind."""
        return self.search([("amount", ">", 0)])
