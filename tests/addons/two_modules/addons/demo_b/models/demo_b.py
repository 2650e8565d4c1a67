from odoo import fields, models


class DemoAThing(models.Model):
    _inherit = "demo.a.thing"

    colour = fields.Char(default="blue")


class DemoBLink(models.Model):
    _name = "demo.b.link"
    _description = "Demo B Link"

    thing_id = fields.Many2one("demo.a.thing", required=True)
    note = fields.Char()
