from odoo import fields, models


class IrModuleModule(models.Model):
    _name = "ir.module.module"
    _description = "Module"
    _order = "name"
    _sql_constraints = [("name_uniq", "UNIQUE (name)", "The name of the module must be unique!")]

    name = fields.Char(required=True)
    shortdesc = fields.Char("Module Name")
    author = fields.Char()
    summary = fields.Char()
    state = fields.Selection(
        [("uninstallable", "Uninstallable"), ("uninstalled", "Not Installed"),
         ("installed", "Installed"), ("to upgrade", "To be upgraded"),
         ("to remove", "To be removed"), ("to install", "To be installed")],
        default="uninstalled",
    )
    latest_version = fields.Char("Installed Version")
    demo = fields.Boolean("Demo Data", default=False)


class IrModelData(models.Model):
    _name = "ir.model.data"
    _description = "Model Data"
    _order = "module, model, name"
    _sql_constraints = [("module_name_uniq", "UNIQUE (module, name)", "External IDs must be unique")]

    module = fields.Char(required=True)
    name = fields.Char("External Identifier", required=True)
    model = fields.Char("Model Name", required=True)
    res_id = fields.Integer("Record ID")
    noupdate = fields.Boolean("Non Updatable", default=False)
