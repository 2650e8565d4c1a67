"""Environments and the method decorators addons use.

The decorators only mark methods: this stand-in has no onchange or constraint
machinery, and `create` accepts a dict or a list of dicts whatever the decorator.
"""

from . import SUPERUSER_ID


def _mark(*_args, **_kwargs):
    def decorator(method):
        return method
    return decorator


def model(method):
    return method


model_create_multi = model
depends = depends_context = constrains = onchange = returns = autovacuum = _mark


class Environment:
    """`env[model]`, `env.cr`, `env.ref(xmlid)`, `env.user`, `env.context`."""

    def __init__(self, cr, uid=SUPERUSER_ID, context=None, registry=None):
        from .modules.registry import Registry
        self.cr = cr
        self.uid = uid
        self.context = dict(context or {})
        self.registry = registry or Registry.instance
        self.cache = {}  # values of non-stored fields: (model, id, field) -> value

    def __getitem__(self, model_name):
        return self.registry[model_name](self, ())

    def __contains__(self, model_name):
        return model_name in self.registry.models

    def __call__(self, cr=None, user=None, context=None, su=None):
        uid = user.id if hasattr(user, "_ids") else (user or self.uid)
        return Environment(cr or self.cr, uid, self.context if context is None else context,
                           self.registry)

    @property
    def user(self):
        return self["res.users"].browse(self.uid)

    @property
    def lang(self):
        return self.context.get("lang", "en_US")

    def ref(self, xml_id, raise_if_not_found=True):
        """The record of the external id `module.name`."""
        module, _sep, name = xml_id.partition(".")
        self.cr.execute(
            "SELECT model, res_id FROM ir_model_data WHERE module = %s AND name = %s",
            (module, name),
        )
        row = self.cr.fetchone()
        if row and row[0] in self.registry.models:
            record = self[row[0]].browse(row[1]).exists()
            if record:
                return record
        if raise_if_not_found:
            raise ValueError(f"External ID not found in the system: {xml_id}")
        return None
