"""The minimal ORM: model classes are recordset classes, as in Odoo.

`env['x.y']` is an instance of the registry's class for `x.y` holding ids; fields
are descriptors reading and writing the table `x_y` directly (no cache beyond
computed fields). Enough for addon code and tests that create, search, browse,
write and unlink records; no access rules, no onchange, no translations.
"""

import collections
import logging

import psycopg2

from . import fields
from .exceptions import MissingError, ValidationError
from .osv import expression

_logger = logging.getLogger(__name__)

# model classes defined by each addon, in definition order (the registry reads it)
module_classes = collections.defaultdict(list)


def addon_of(python_module):
    """'odoo.addons.demo_ok.models.thing' -> 'demo_ok' (None outside addons)."""
    parts = python_module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["odoo", "addons"] else None


class BaseModel:
    _name = None
    _description = None
    _inherit = ()
    _order = "id"
    _rec_name = None
    _table = None
    _sql_constraints = []
    _auto = False
    _abstract = True
    _transient = False
    _register = False
    _original_module = None
    _fields = {}

    create_uid = fields.Many2one("res.users", string="Created by")
    create_date = fields.Datetime(string="Created on")
    write_uid = fields.Many2one("res.users", string="Last Updated by")
    write_date = fields.Datetime(string="Last Updated on")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_register", True) is False:
            return
        module = addon_of(cls.__module__)
        if module:
            module_classes[module].append(cls)

    def __init__(self, env, ids=()):
        self.env = env
        self._ids = tuple(ids)

    # ------------------------------------------------------------------ recordset basics

    @property
    def ids(self):
        return list(self._ids)

    @property
    def id(self):
        return self._ids[0] if len(self._ids) == 1 else False

    @property
    def _cr(self):
        return self.env.cr

    @property
    def _context(self):
        return self.env.context

    @property
    def pool(self):
        return self.env.registry

    def __len__(self):
        return len(self._ids)

    def __bool__(self):
        return bool(self._ids)

    def __iter__(self):
        for record_id in self._ids:
            yield self.browse(record_id)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.browse(self._ids[key])
        if isinstance(key, str):
            return getattr(self, key)
        return self.browse(self._ids[key])

    def __contains__(self, record):
        return record.id in self._ids

    def __eq__(self, other):
        return isinstance(other, BaseModel) and (self._name, self._ids) == (other._name, other._ids)

    def __hash__(self):
        return hash((self._name, self._ids))

    def __or__(self, other):
        return self.browse(list(dict.fromkeys(self._ids + other._ids)))

    def __add__(self, other):
        return self.browse(self._ids + other._ids)

    def __sub__(self, other):
        return self.browse([i for i in self._ids if i not in other._ids])

    def __and__(self, other):
        return self.browse([i for i in self._ids if i in other._ids])

    def __repr__(self):
        return f"{self._name}{self._ids!r}"

    def browse(self, ids=()):
        if not ids:
            ids = ()
        elif isinstance(ids, int):
            ids = (ids,)
        return type(self)(self.env, ids)

    def ensure_one(self):
        if len(self._ids) != 1:
            raise ValueError(f"Expected singleton: {self}")
        return self

    def exists(self):
        if not self._ids:
            return self
        self._cr.execute(f'SELECT id FROM "{self._table}" WHERE id = ANY(%s)', (list(self._ids),))
        found = {row[0] for row in self._cr.fetchall()}
        return self.browse([i for i in self._ids if i in found])

    def with_env(self, env):
        return type(self)(env, self._ids)

    def with_context(self, *args, **kwargs):
        context = dict(args[0] if args else self.env.context, **kwargs)
        return self.with_env(self.env(context=context))

    def with_user(self, user):
        return self.with_env(self.env(user=user))

    def sudo(self, flag=True):
        return self

    def with_company(self, company):
        return self

    # ------------------------------------------------------------------ field access

    def _get_value(self, field):
        if not self._ids:
            return field.to_record(None, self.env)
        self.ensure_one()
        if field.compute:
            return self._computed_value(field)
        if isinstance(field, fields.One2many):
            return self.env[field.comodel_name].search([(field.inverse_name, "=", self.id)])
        if not field.store:
            return self.env.cache.get((self._name, self.id, field.name), field.empty)
        self._cr.execute(f'SELECT "{field.name}" FROM "{self._table}" WHERE id = %s', (self.id,))
        row = self._cr.fetchone()
        if row is None:
            raise MissingError(f"Record does not exist or has been deleted. (Record: {self}, User: {self.env.uid})")
        return field.to_record(row[0], self.env)

    def _computed_value(self, field):
        key = (self._name, self.id, field.name)
        if key not in self.env.cache:
            getattr(self, field.compute)()
        return self.env.cache.get(key, field.empty)

    def _set_value(self, field, value):
        if field.store:
            self.write({field.name: value})
            return
        for record_id in self._ids:
            self.env.cache[(self._name, record_id, field.name)] = value

    @property
    def display_name(self):
        if not self._ids:
            return False
        name_field = self._rec_name or ("name" if "name" in self._fields else None)
        value = getattr(self, name_field) if name_field else False
        return value or f"{self._name},{self.id}"

    # ------------------------------------------------------------------ CRUD

    def create(self, vals_list):
        """Create one record per dict; return them as one recordset."""
        many = isinstance(vals_list, (list, tuple))
        ids = [self._create_one(vals) for vals in (vals_list if many else [vals_list])]
        return self.browse(ids)

    def _create_one(self, vals):
        vals = self._add_defaults(dict(vals))
        self._check_required(vals)
        columns, deferred = self._split_values(vals)
        columns.update(create_uid=self.env.uid, write_uid=self.env.uid)
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join(["%s"] * len(columns))
        self._cr.execute(
            f'INSERT INTO "{self._table}" ({names}, create_date, write_date) '
            f"VALUES ({marks}, now() at time zone 'UTC', now() at time zone 'UTC') RETURNING id",
            list(columns.values()),
        )
        record = self.browse(self._cr.fetchone()[0])
        for name, value in deferred.items():
            setattr(record, name, value)
        return record.id

    def _add_defaults(self, vals):
        for name, field in self._fields.items():
            if name in vals or not field.store:
                continue
            context_default = self.env.context.get(f"default_{name}")
            value = context_default if context_default is not None else field.default_value(self)
            if value is not None:
                vals[name] = value
        return vals

    def _check_required(self, vals):
        for name, field in self._fields.items():
            if field.required and field.store and vals.get(name) in (None, False, ""):
                raise ValidationError(
                    f"Missing required value for the field '{field.string or name}' ({name}) on {self._name}"
                )

    def _split_values(self, vals):
        """(column values, values of non-stored fields) after checking every name."""
        columns, deferred = {}, {}
        for name, value in vals.items():
            field = self._fields.get(name)
            if field is None:
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
            if field.store:
                columns[name] = field.to_column(value)
            else:
                deferred[name] = value
        return columns, deferred

    def write(self, vals):
        if not self._ids:
            return True
        columns, deferred = self._split_values(vals)
        columns["write_uid"] = self.env.uid
        assignments = ", ".join(f'"{name}" = %s' for name in columns)
        self._cr.execute(
            f'UPDATE "{self._table}" SET {assignments}, write_date = now() at time zone \'UTC\' '
            f"WHERE id = ANY(%s)",
            [*columns.values(), list(self._ids)],
        )
        for name, value in deferred.items():
            self._set_value(self._fields[name], value)
        return True

    def unlink(self):
        if not self._ids:
            return True
        self._cr.execute(f'DELETE FROM "{self._table}" WHERE id = ANY(%s)', (list(self._ids),))
        self._cr.execute(
            "DELETE FROM ir_model_data WHERE model = %s AND res_id = ANY(%s)",
            (self._name, list(self._ids)),
        )
        return True

    # ------------------------------------------------------------------ queries

    def search(self, domain, offset=0, limit=None, order=None, count=False):
        where, params = expression.to_sql(self, self._active_domain(domain))
        if count:
            self._cr.execute(f'SELECT count(1) FROM "{self._table}" WHERE {where}', params)
            return self._cr.fetchone()[0]
        query = f'SELECT id FROM "{self._table}" WHERE {where} ORDER BY {order or self._order}'
        if limit:
            query += f" LIMIT {int(limit)}"
        if offset:
            query += f" OFFSET {int(offset)}"
        self._cr.execute(query, params)
        return self.browse([row[0] for row in self._cr.fetchall()])

    def _active_domain(self, domain):
        domain = list(domain or [])
        mentions_active = any(isinstance(leaf, (list, tuple)) and leaf[0] == "active" for leaf in domain)
        if "active" in self._fields and not mentions_active and self.env.context.get("active_test", True):
            domain.append(("active", "=", True))
        return domain

    def search_count(self, domain, limit=None):
        return self.search(domain, count=True)

    def search_read(self, domain=None, fields=None, offset=0, limit=None, order=None):
        return self.search(domain or [], offset=offset, limit=limit, order=order).read(fields)

    def read(self, fields=None):
        names = fields or [n for n, f in self._fields.items() if f.store]
        return [{"id": record.id, **{n: record._read_value(n) for n in names if n != "id"}}
                for record in self]

    def _read_value(self, name):
        value = getattr(self, name)
        if isinstance(self._fields[name], fields.Many2one):
            return (value.id, value.display_name) if value else False
        if isinstance(value, BaseModel):
            return value.ids
        return value

    def mapped(self, func):
        if callable(func):
            return [func(record) for record in self]
        first, _sep, rest = func.partition(".")
        values = [getattr(record, first) for record in self]
        if first in self._fields and isinstance(self._fields[first], (fields.Many2one, fields.One2many)):
            records = self.env[self._fields[first].comodel_name].browse(
                list(dict.fromkeys(i for v in values for i in v._ids)))
            return records.mapped(rest) if rest else records
        return values

    def filtered(self, func):
        if isinstance(func, str):
            name = func
            func = lambda record: any(record.mapped(name))  # noqa: E731
        return self.browse([record.id for record in self if func(record)])

    def filtered_domain(self, domain):
        return self & self.with_context(active_test=False).search([("id", "in", self.ids), *domain])

    def sorted(self, key=None, reverse=False):
        if key is None:
            ordered = self.with_context(active_test=False).search([("id", "in", self.ids)])
            return self.browse(ordered._ids[::-1] if reverse else ordered._ids)
        if isinstance(key, str):
            name = key
            key = lambda record: getattr(record, name)  # noqa: E731
        return self.browse([r.id for r in sorted(self, key=key, reverse=reverse)])

    def name_get(self):
        return [(record.id, record.display_name) for record in self]

    # ------------------------------------------------------------------ schema

    def _auto_init(self):
        """Create the table, add missing columns and SQL constraints."""
        if not self._auto:
            return
        cr = self._cr
        cr.execute(f'CREATE TABLE IF NOT EXISTS "{self._table}" (id serial PRIMARY KEY)')
        cr.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (self._table,),
        )
        existing = {row[0] for row in cr.fetchall()}
        for name, field in self._fields.items():
            if field.store and name not in existing:
                cr.execute(f'ALTER TABLE "{self._table}" ADD COLUMN "{name}" {field.column_type}')
                _logger.debug("Table %r: added column %r of type %s", self._table, name, field.column_type)
        for key, definition, _message in self._sql_constraints:
            self._add_constraint(f"{self._table}_{key}", definition)

    def _add_constraint(self, name, definition):
        cr = self._cr
        cr.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", (name,))
        if cr.fetchone():
            return
        try:
            with cr.savepoint():
                cr.execute(f'ALTER TABLE "{self._table}" ADD CONSTRAINT "{name}" {definition}')
        except psycopg2.Error:
            _logger.warning("Table %r: unable to add constraint %r as %r", self._table, name, definition)


class Model(BaseModel):
    """A regular database-persisted model."""

    _auto = True
    _abstract = False
    _register = False


class TransientModel(Model):
    """A wizard model (stored like a model here; nobody vacuums it)."""

    _transient = True
    _register = False


class AbstractModel(BaseModel):
    """A model without table, only inherited from."""

    _register = False
