"""Data files of a module: `.csv` (one model per file, named after it), `.xml`
(`<odoo><record id model><field name>...`) and `.sql`.

Records get external ids in ir_model_data; on update they are written again,
except those loaded under `<data noupdate="1">`. Any problem becomes a
ParseError naming the file and line, which fails the installation.
"""

import ast
import csv
import logging
import os
import re
import xml.etree.ElementTree as ET
from xml.parsers import expat

from .. import fields

_logger = logging.getLogger(__name__)

_REF_RE = re.compile(r"^ref\(\s*['\"]([\w.]+)['\"]\s*\)$")
_IGNORED_TAGS = ("menuitem", "template", "delete", "asset")


class ParseError(ValueError):
    """A data file cannot be loaded."""


def convert_file(env, module, filename, pathname, mode, noupdate=False):
    """Load one data file (`filename` relative to the module, `pathname` absolute)."""
    extension = os.path.splitext(filename)[1].lower()
    if extension == ".csv":
        convert_csv_import(env, module, pathname, mode, noupdate)
    elif extension == ".xml":
        convert_xml_import(env, module, pathname, mode, noupdate)
    elif extension == ".sql":
        with open(pathname, encoding="utf-8") as f:
            env.cr.execute(f.read())
    else:
        raise ValueError(f"Can't load unknown file type {filename}.")


def convert_csv_import(env, module, pathname, mode, noupdate=False):
    model = os.path.splitext(os.path.basename(pathname))[0]
    with open(pathname, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header = rows[0]
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            xmlid, values = _csv_values(env, module, model, header, row)
            load_record(env, module, model, xmlid, values, mode, noupdate)
        except Exception as exc:
            raise ParseError(f"while parsing {pathname}:{line_no}\n{exc}") from None


def _csv_values(env, module, model, header, row):
    if model not in env:
        raise ValueError(f"Model not found: {model}")
    xmlid, values = None, {}
    for column, cell in zip(header, row):
        if column == "id":
            xmlid = cell
        elif column.endswith(":id") or column.endswith("/id"):
            values[column[:-3]] = resolve_xmlid(env, module, cell) if cell else False
        else:
            values[column] = _typed(env[model], column, cell)
    return xmlid, values


def convert_xml_import(env, module, pathname, mode, noupdate=False):
    root, lines = _parse_xml(pathname)
    if root.tag not in ("odoo", "openerp", "data"):
        raise ParseError(f"while parsing {pathname}:{lines.get(root, 1)}\nroot element must be <odoo>")
    _load_children(env, module, pathname, root, lines, mode, noupdate)


def _parse_xml(pathname):
    """(root element, {element: line number}) using expat for the line numbers."""
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    lines = {}

    def start(tag, attrs):
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(pathname, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        raise ParseError(f"while parsing {pathname}:{exc.lineno}\n{exc}") from None
    return builder.close(), lines


def _load_children(env, module, pathname, parent, lines, mode, noupdate):
    for element in parent:
        try:
            _load_element(env, module, pathname, element, lines, mode, noupdate)
        except ParseError:
            raise
        except Exception as exc:
            raise ParseError(f"while parsing {pathname}:{lines.get(element, 0)}\n{exc}") from None


def _load_element(env, module, pathname, element, lines, mode, noupdate):
    if element.tag == "data":
        inner_noupdate = _bool_attr(element.get("noupdate"), noupdate)
        _load_children(env, module, pathname, element, lines, mode, inner_noupdate)
    elif element.tag == "record":
        _load_xml_record(env, module, element, mode, noupdate)
    elif element.tag == "function":
        getattr(env[element.get("model")], element.get("name"))()
    elif element.tag in _IGNORED_TAGS:
        _logger.debug("%s: <%s> ignored by this stand-in", pathname, element.tag)
    else:
        raise ValueError(f"Unknown tag <{element.tag}>")


def _load_xml_record(env, module, element, mode, noupdate):
    model = element.get("model")
    if model not in env:
        raise ValueError(f"Model not found: {model}")
    values = {}
    for field_element in element.findall("field"):
        name = field_element.get("name")
        values[name] = _xml_field_value(env, module, model, field_element)
    load_record(env, module, model, element.get("id"), values, mode, noupdate)


def _xml_field_value(env, module, model, element):
    name = element.get("name")
    if name not in env[model]._fields:
        raise ValueError(f'Invalid field "{name}" on model "{model}"')
    if element.get("ref"):
        return resolve_xmlid(env, module, element.get("ref"))
    if element.get("eval") is not None:
        return _eval(env, module, element.get("eval"))
    if element.get("type") == "xml" or len(element):
        return "".join(ET.tostring(child, encoding="unicode") for child in element).strip()
    return _typed(env[model], name, element.text or "")


def _eval(env, module, expression):
    match = _REF_RE.match(expression.strip())
    if match:
        return resolve_xmlid(env, module, match.group(1))
    return ast.literal_eval(expression)


def _typed(records, name, text):
    field = records._fields.get(name)
    if field is None:
        raise ValueError(f'Invalid field "{name}" on model "{records._name}"')
    text = text.strip()
    if isinstance(field, fields.Boolean):
        return text.lower() in ("1", "true", "t", "yes")
    if isinstance(field, fields.Integer):
        return int(text) if text else 0
    if isinstance(field, fields.Float):
        return float(text) if text else 0.0
    return text or False


def _bool_attr(value, default):
    if value is None:
        return default
    return value.strip().lower() in ("1", "true")


def resolve_xmlid(env, module, xmlid):
    """Database id of `xmlid` (`name` means `<module>.name`)."""
    full = xmlid if "." in xmlid else f"{module}.{xmlid}"
    return env.ref(full).id


def load_record(env, module, model, xmlid, values, mode, noupdate=False):
    """Create or update the record `xmlid` of `model` with `values`."""
    if not xmlid:
        return env[model].create(values)
    xmodule, _sep, name = xmlid.rpartition(".")
    xmodule = xmodule or module
    env.cr.execute(
        "SELECT id, res_id, noupdate FROM ir_model_data WHERE module = %s AND name = %s",
        (xmodule, name),
    )
    row = env.cr.fetchone()
    record = env[model].browse(row[1]).exists() if row else env[model]
    if record:
        if not (row[2] and mode == "update"):
            record.write(values)
        return record
    record = env[model].create(values)
    if row:
        env.cr.execute("UPDATE ir_model_data SET res_id = %s WHERE id = %s", (record.id, row[0]))
    else:
        env.cr.execute(
            "INSERT INTO ir_model_data (module, name, model, res_id, noupdate, create_date, write_date) "
            "VALUES (%s, %s, %s, %s, %s, now() at time zone 'UTC', now() at time zone 'UTC')",
            (xmodule, name, model, record.id, noupdate),
        )
    return record
