from odoo import fields, models


class IrCron(models.Model):
    _name = "ir.cron"
    _description = "Scheduled Actions"
    _order = "priority, name"

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    model_name = fields.Char()
    code = fields.Text()
    interval_number = fields.Integer(default=1)
    interval_type = fields.Selection(
        [("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks"),
         ("months", "Months")], default="months")
    nextcall = fields.Datetime(default=fields.Datetime.now)
    priority = fields.Integer(default=5)
