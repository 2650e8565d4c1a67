"""Attachments stored in the filestore, content-addressed like Odoo's:
`<data_dir>/filestore/<db>/<sha1[:2]>/<sha1>`, written once, never rewritten."""

import base64
import hashlib
import logging
import os
import tempfile

from odoo import api, fields, models
from odoo.tools import config

_logger = logging.getLogger(__name__)


class IrAttachment(models.Model):
    _name = "ir.attachment"
    _description = "Attachment"
    _order = "id desc"

    name = fields.Char(required=True)
    res_model = fields.Char("Resource Model")
    res_id = fields.Integer("Resource ID")
    type = fields.Selection([("url", "URL"), ("binary", "File")], default="binary")
    url = fields.Char()
    store_fname = fields.Char("Stored Filename")
    checksum = fields.Char()
    file_size = fields.Integer()
    mimetype = fields.Char()
    raw = fields.Binary(compute="_compute_raw")
    datas = fields.Binary(compute="_compute_datas")

    @api.model
    def _full_path(self, fname):
        return os.path.join(config.filestore(self.env.cr.dbname), fname)

    @api.model
    def _file_write(self, data):
        checksum = hashlib.sha1(data).hexdigest()
        fname = f"{checksum[:2]}/{checksum}"
        path = self._full_path(fname)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False) as f:
                f.write(data)
            os.replace(f.name, path)
            _logger.debug("_file_write writing %s", path)
        return fname, checksum

    @api.model
    def _file_read(self, fname):
        with open(self._full_path(fname), "rb") as f:
            return f.read()

    def _compute_raw(self):
        for attachment in self:
            fname = attachment.store_fname
            attachment.raw = self._file_read(fname) if fname else False

    def _compute_datas(self):
        for attachment in self:
            raw = attachment.raw
            attachment.datas = base64.b64encode(raw) if raw else False

    @api.model_create_multi
    def create(self, vals_list):
        many = isinstance(vals_list, (list, tuple))
        prepared = [self._store_content(dict(vals)) for vals in (vals_list if many else [vals_list])]
        return super().create(prepared)

    def _store_content(self, vals):
        raw, datas = vals.pop("raw", None), vals.pop("datas", None)
        if datas:
            raw = base64.b64decode(datas)
        if raw is None or raw is False:
            return vals
        if isinstance(raw, str):
            raw = raw.encode()
        fname, checksum = self._file_write(raw)
        vals.update(store_fname=fname, checksum=checksum, file_size=len(raw))
        vals.setdefault("mimetype", "application/octet-stream")
        return vals
