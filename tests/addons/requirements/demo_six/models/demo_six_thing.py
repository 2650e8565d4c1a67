import six

from odoo import api, fields, models


class DemoSixThing(models.Model):
    _name = "demo.six.thing"
    _description = "Demo Six Thing"

    name = fields.Char(required=True)

    @api.model
    def text_type_name(self):
        return six.text_type.__name__
