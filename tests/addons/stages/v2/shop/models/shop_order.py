from odoo import fields, models


class ShopOrder(models.Model):
    _name = "shop.order"
    _description = "Shop Order"
    _order = "name"

    name = fields.Char(required=True)
    amount = fields.Float()
    note = fields.Char()
