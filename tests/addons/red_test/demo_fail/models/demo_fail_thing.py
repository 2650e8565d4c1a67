from odoo import fields, models


class DemoFailThing(models.Model):
    _name = "demo.fail.thing"
    _description = "Demo Fail Thing"

    name = fields.Char(required=True)
