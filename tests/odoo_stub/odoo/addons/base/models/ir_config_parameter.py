import datetime
import uuid

from odoo import fields, models


class IrConfigParameter(models.Model):
    _name = "ir.config_parameter"
    _description = "System Parameter"
    _rec_name = "key"
    _order = "key"
    _sql_constraints = [("key_uniq", "UNIQUE (key)", "Key must be unique.")]

    key = fields.Char(required=True)
    value = fields.Text(required=True)

    def get_param(self, key, default=False):
        record = self.search([("key", "=", key)], limit=1)
        return record.value if record else default

    def set_param(self, key, value):
        record = self.search([("key", "=", key)], limit=1)
        if value is False or value is None:
            record.unlink()
        elif record:
            record.value = str(value)
        else:
            self.create({"key": key, "value": str(value)})
        return True

    def init_database_parameters(self):
        """uuid, secret and creation date of a new database (a copy gets new ones)."""
        now = datetime.datetime.now().replace(microsecond=0)
        for key, value in (("database.uuid", str(uuid.uuid1())),
                           ("database.secret", str(uuid.uuid4())),
                           ("database.create_date", now.strftime("%Y-%m-%d %H:%M:%S")),
                           ("web.base.url", "http://localhost:8069")):
            if not self.get_param(key):
                self.set_param(key, value)
