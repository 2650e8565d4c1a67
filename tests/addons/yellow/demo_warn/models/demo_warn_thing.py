from odoo import fields, models


class DemoWarnThing(models.Model):
    _name = "demo.warn.thing"
    _description = "Demo Warn Thing"

    name = fields.Char(required=True)
    size = fields.Integer()
