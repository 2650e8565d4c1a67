from odoo import fields, models


class DemoAThing(models.Model):
    _name = "demo.a.thing"
    _description = "Demo A Thing"

    name = fields.Char(required=True)
