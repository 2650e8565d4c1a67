"""Domains to SQL: `[(field, operator, value), ...]` in Odoo's prefix notation.

Supported: '&', '|', '!' and the operators =, !=, <>, <, <=, >, >=, in, not in,
like, ilike, not like, not ilike, =like, =ilike, on the model's own columns.
"""

_COMPARE = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_LIKE = {"like": "LIKE", "ilike": "ILIKE", "not like": "NOT LIKE", "not ilike": "NOT ILIKE",
         "=like": "LIKE", "=ilike": "ILIKE"}
TRUE_LEAF = (1, "=", 1)


def to_sql(model, domain):
    """(where clause, params) for `domain` on `model`'s table."""
    items = list(domain or [])
    clauses, params = [], []
    while items:
        sql, leaf_params = _parse(model, items)
        clauses.append(sql)
        params += leaf_params
    return (" AND ".join(clauses) or "TRUE"), params


def _parse(model, items):
    """Consume one expression from the front of `items`: (sql, params)."""
    item = items.pop(0)
    if item in ("&", "|"):
        left, left_params = _parse(model, items)
        right, right_params = _parse(model, items)
        return f"({left} {'AND' if item == '&' else 'OR'} {right})", left_params + right_params
    if item == "!":
        inner, params = _parse(model, items)
        return f"(NOT {inner})", params
    return _leaf(model, item)


def _leaf(model, leaf):
    if tuple(leaf) == TRUE_LEAF:
        return "TRUE", []
    field_name, operator, value = leaf
    column = _column(model, field_name)
    value = _plain(value)
    if operator in ("in", "not in"):
        return _in(column, operator, value)
    if operator in _LIKE:
        return _like(column, operator, value)
    if operator not in _COMPARE:
        raise ValueError(f"Invalid domain operator {operator!r}")
    if value is False or value is None:
        return _is_null(model, field_name, column, operator)
    return f"{column} {_COMPARE[operator]} %s", [value]


def _column(model, field_name):
    field = model._fields.get(field_name)
    if field is None or not field.store:
        raise ValueError(f"Invalid field {field_name!r} in domain on model {model._name!r}")
    return f'"{model._table}"."{field_name}"'


def _plain(value):
    if hasattr(value, "_ids"):
        return value.id if len(value._ids) == 1 else list(value._ids)
    return value


def _in(column, operator, value):
    values = list(value) if isinstance(value, (list, tuple, set)) else [value]
    if not values:
        return ("FALSE" if operator == "in" else "TRUE"), []
    sql = f"{column} = ANY(%s)" if operator == "in" else f"NOT ({column} = ANY(%s))"
    return sql, [values]


def _like(column, operator, value):
    pattern = value if operator.startswith("=") else f"%{value}%"
    return f"{column}::text {_LIKE[operator]} %s", [pattern]


def _is_null(model, field_name, column, operator):
    boolean = model._fields[field_name].column_type == "bool"
    if operator == "=":
        return (f"({column} IS NULL OR {column} = FALSE)" if boolean else f"{column} IS NULL"), []
    return (f"{column} = TRUE" if boolean else f"{column} IS NOT NULL"), []
