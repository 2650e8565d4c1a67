"""The registry: the model classes of one database, built module by module."""

import collections
import logging

from .. import fields, models, sql_db

_logger = logging.getLogger(__name__)


class Registry:
    """Models of the database `db_name` (one database per process here)."""

    instance = None  # the registry of this process, used by tests and environments

    def __init__(self, db_name):
        self.db_name = db_name
        self.models = {}
        self.module_models = collections.defaultdict(list)  # module -> model names
        self.loaded_modules = []
        self.updated_modules = []
        Registry.instance = self

    def __getitem__(self, model_name):
        return self.models[model_name]

    def __contains__(self, model_name):
        return model_name in self.models

    def cursor(self):
        """A cursor on a new connection (commit or roll back, then close it)."""
        return sql_db.Cursor(self.db_name)

    def load(self, module):
        """Build the classes of the models `module` defines or extends (imported already)."""
        names = [self._build(cls, module) for cls in models.module_classes.get(module, [])]
        self.module_models[module] = list(dict.fromkeys(names))
        if module not in self.loaded_modules:
            self.loaded_modules.append(module)
        return self.module_models[module]

    def _build(self, cls, module):
        parents = [cls._inherit] if isinstance(cls._inherit, str) else list(cls._inherit or [])
        name = cls.__dict__.get("_name") or (parents[0] if parents else None)
        if not name:
            raise TypeError(f"Model class {cls.__qualname__} in {cls.__module__} has neither _name nor _inherit")
        bases = [cls]
        for parent in parents:
            if parent not in self.models:
                raise TypeError(f"Model {name!r} inherits from non-existing model {parent!r}.")
            bases.append(self.models[parent])
        previous = self.models.get(name)
        attrs = {
            "_name": name,
            "_register": False,
            "__module__": cls.__module__,
            "_table": cls.__dict__.get("_table") or (previous._table if previous else name.replace(".", "_")),
            "_original_module": previous._original_module if previous else module,
        }
        model_class = type(cls.__name__, tuple(bases), attrs)
        model_class._fields = _collect_fields(model_class)
        self.models[name] = model_class
        return name

    def init_models(self, cr, module, env):
        """Create or update the tables of the models `module` touches."""
        for name in self.module_models.get(module, []):
            env[name]._auto_init()
        self._reflect_models(cr, module)

    def _reflect_models(self, cr, module):
        """ir_model rows and their xml ids `<module>.model_<table>`."""
        for name in self.module_models.get(module, []):
            model_class = self.models[name]
            cr.execute(
                "INSERT INTO ir_model (model, name, create_date, write_date) "
                "VALUES (%s, %s, now() at time zone 'UTC', now() at time zone 'UTC') "
                "ON CONFLICT (model) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (name, model_class._description or name),
            )
            model_id = cr.fetchone()[0]
            cr.execute(
                "INSERT INTO ir_model_data (module, name, model, res_id, noupdate) "
                "VALUES (%s, %s, 'ir.model', %s, false) "
                "ON CONFLICT (module, name) DO UPDATE SET res_id = EXCLUDED.res_id",
                (module, "model_" + model_class._table, model_id),
            )

    def new_models(self, module):
        """The stored models `module` defines (not those it only extends)."""
        return [
            name for name in self.module_models.get(module, [])
            if self.models[name]._original_module == module and self.models[name]._auto
        ]


def _collect_fields(model_class):
    collected = {"id": fields.Id(string="ID")}
    collected["id"].name = "id"
    for klass in reversed(model_class.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, fields.Field):
                collected[name] = value
    return collected
