"""Views and window actions, stored so that addons' XML loads; a view's fields
are checked against its model, as Odoo does at install."""

import xml.etree.ElementTree as ET

from odoo import api, fields, models
from odoo.exceptions import ValidationError


class IrUiView(models.Model):
    _name = "ir.ui.view"
    _description = "View"
    _order = "priority, name, id"

    name = fields.Char("View Name", required=True)
    model = fields.Char()
    type = fields.Selection(
        [("list", "List"), ("form", "Form"), ("search", "Search"), ("kanban", "Kanban"),
         ("qweb", "QWeb")], "View Type")
    arch = fields.Text("View Architecture")
    priority = fields.Integer(default=16)
    inherit_id = fields.Many2one("ir.ui.view", "Inherited View")
    active = fields.Boolean(default=True)

    @api.model_create_multi
    def create(self, vals_list):
        views = super().create(vals_list)
        views._check_xml()
        return views

    def write(self, vals):
        result = super().write(vals)
        self._check_xml()
        return result

    def _check_xml(self):
        for view in self:
            if view.arch and view.model:
                view._check_fields(view._parse_arch())

    def _parse_arch(self):
        try:
            return ET.fromstring(self.arch)
        except ET.ParseError as exc:
            raise ValidationError(f"Invalid view {self.name} definition: {exc}") from None

    def _check_fields(self, root):
        if self.model not in self.env:
            raise ValidationError(f"Model not found: {self.model}")
        known = self.env[self.model]._fields
        for element in root.iter("field"):
            name = element.get("name")
            if name and name not in known:
                raise ValidationError(
                    "Error while validating view near:\n\n"
                    f"{ET.tostring(element, encoding='unicode').strip()}\n"
                    f'Field "{name}" does not exist in model "{self.model}"'
                )


class IrActionsActWindow(models.Model):
    _name = "ir.actions.act_window"
    _description = "Action Window"

    name = fields.Char(required=True)
    res_model = fields.Char("Destination Model", required=True)
    view_mode = fields.Char(default="list,form")
    target = fields.Char(default="current")
