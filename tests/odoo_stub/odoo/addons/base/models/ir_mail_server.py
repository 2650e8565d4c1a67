from odoo import fields, models


class IrMailServer(models.Model):
    _name = "ir.mail_server"
    _description = "Mail Server"
    _order = "sequence, id"

    name = fields.Char(required=True)
    from_filter = fields.Char()
    smtp_host = fields.Char("SMTP Server")
    smtp_port = fields.Integer("SMTP Port", default=25)
    smtp_authentication = fields.Selection(
        [("login", "Username"), ("certificate", "SSL Certificate"), ("cli", "Command Line Interface")],
        default="login")
    smtp_user = fields.Char("Username")
    smtp_pass = fields.Char("Password")
    smtp_encryption = fields.Selection(
        [("none", "None"), ("starttls", "TLS (STARTTLS)"), ("ssl", "SSL/TLS")], default="none")
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
