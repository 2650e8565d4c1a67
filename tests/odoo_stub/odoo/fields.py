"""Field types of the minimal ORM.

A field is a descriptor on the model class: reading `record.name` queries the row,
assigning writes it. Stored fields have a column; `compute=` fields are never
stored here (they are computed on each read).
"""

import datetime


class Field:
    column_type = None  # SQL type of the column, None for non-stored fields
    empty = False  # value of an empty field, as Odoo returns it

    def __init__(self, string=None, required=False, default=None, compute=None, store=True,
                 readonly=False, index=False, help=None, **kwargs):
        self.string = string
        self.required = required
        self.default = default
        self.compute = compute
        self.store = bool(store) and compute is None and self.column_type is not None
        self.readonly = readonly
        self.index = index
        self.help = help
        self.extra = kwargs
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, record, owner=None):
        if record is None:
            return self
        return record._get_value(self)

    def __set__(self, record, value):
        record._set_value(self, value)

    def default_value(self, records):
        return self.default(records) if callable(self.default) else self.default

    def to_column(self, value):
        """Python value -> database value."""
        return None if value is False or value is None else value

    def to_record(self, value, env):
        """Database value -> what `record.field` returns."""
        return self.empty if value is None else value


class Id(Field):
    column_type = "serial"


class Char(Field):
    column_type = "varchar"

    def __init__(self, string=None, size=None, translate=False, **kwargs):
        super().__init__(string=string, **kwargs)


class Text(Field):
    column_type = "text"

    def __init__(self, string=None, translate=False, **kwargs):
        super().__init__(string=string, **kwargs)


Html = Text


class Selection(Field):
    column_type = "varchar"

    def __init__(self, selection=None, string=None, **kwargs):
        super().__init__(string=string, **kwargs)
        self.selection = selection


class Integer(Field):
    column_type = "int4"
    empty = 0


class Float(Field):
    column_type = "float8"
    empty = 0.0

    def __init__(self, string=None, digits=None, **kwargs):
        super().__init__(string=string, **kwargs)


Monetary = Float


class Boolean(Field):
    column_type = "bool"

    def to_column(self, value):
        return bool(value)

    def to_record(self, value, env):
        return bool(value)


class Date(Field):
    column_type = "date"

    @staticmethod
    def today(*_args):
        return datetime.date.today()


class Datetime(Field):
    column_type = "timestamp"

    @staticmethod
    def now(*_args):
        return datetime.datetime.now().replace(microsecond=0)


class Binary(Field):
    column_type = "bytea"

    def to_record(self, value, env):
        return False if value is None else bytes(value)


class Many2one(Field):
    """Stored as the integer id of a `comodel_name` record."""

    column_type = "int4"

    def __init__(self, comodel_name=None, string=None, ondelete="set null", **kwargs):
        super().__init__(string=string, **kwargs)
        self.comodel_name = comodel_name
        self.ondelete = ondelete

    def to_column(self, value):
        if hasattr(value, "_ids"):
            return value.id or None
        return value or None

    def to_record(self, value, env):
        return env[self.comodel_name].browse([value] if value else [])


class One2many(Field):
    """Not stored: the `comodel_name` records whose `inverse_name` is this record."""

    def __init__(self, comodel_name=None, inverse_name=None, string=None, **kwargs):
        super().__init__(string=string, **kwargs)
        self.comodel_name = comodel_name
        self.inverse_name = inverse_name
