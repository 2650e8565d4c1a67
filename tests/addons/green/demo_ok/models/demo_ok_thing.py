from odoo import api, fields, models


class DemoOkThing(models.Model):
    _name = "demo.ok.thing"
    _description = "Demo OK Thing"
    _order = "name"

    name = fields.Char(required=True)
    code = fields.Char()
    quantity = fields.Integer(default=1)
    price = fields.Float()
    active = fields.Boolean(default=True)
    note = fields.Text()
    owner_id = fields.Many2one("res.users", string="Owner")
    total = fields.Float(compute="_compute_total")

    @api.depends("quantity", "price")
    def _compute_total(self):
        for thing in self:
            thing.total = thing.quantity * thing.price
