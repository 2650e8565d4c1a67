from odoo import fields, models


class ResGroups(models.Model):
    _name = "res.groups"
    _description = "Access Groups"
    _order = "name"

    name = fields.Char(required=True)


class ResUsers(models.Model):
    _name = "res.users"
    _description = "User"
    _order = "name, login"
    _sql_constraints = [("login_key", "UNIQUE (login)", "You can not have two users with the same login!")]

    name = fields.Char(required=True)
    login = fields.Char(required=True)
    password = fields.Char()
    email = fields.Char()
    active = fields.Boolean(default=True)

    def context_get(self):
        """The context of the environment's user (one language here)."""
        return {"lang": "en_US", "tz": False, "uid": self.env.uid}
