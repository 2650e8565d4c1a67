from odoo import fields, models


class IrModel(models.Model):
    _name = "ir.model"
    _description = "Models"
    _order = "model"
    _rec_name = "model"
    _sql_constraints = [("obj_name_uniq", "UNIQUE (model)", "Each model must have a unique name.")]

    name = fields.Char("Model Description", required=True)
    model = fields.Char(required=True)


class IrModelAccess(models.Model):
    _name = "ir.model.access"
    _description = "Model Access"
    _order = "model_id, group_id, name, id"

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    model_id = fields.Many2one("ir.model", "Model", required=True, ondelete="cascade")
    group_id = fields.Many2one("res.groups", "Group", ondelete="restrict")
    perm_read = fields.Boolean("Read Access")
    perm_write = fields.Boolean("Write Access")
    perm_create = fields.Boolean("Create Access")
    perm_unlink = fields.Boolean("Delete Access")
