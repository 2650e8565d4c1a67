"""Finding modules on the addons paths, reading manifests, importing modules."""

import ast
import copy
import importlib
import importlib.metadata
import logging
import os
import re

import odoo.addons

from .. import release
from ..tools import config

_logger = logging.getLogger(__name__)

MANIFEST = "__manifest__.py"
_DEFAULTS = {
    "application": False, "author": "Odoo S.A.", "auto_install": False,
    "category": "Uncategorized", "data": [], "demo": [], "depends": [], "description": "",
    "external_dependencies": {}, "installable": True, "license": "LGPL-3",
    "post_init_hook": "", "post_load": "", "summary": "", "version": "1.0",
}
_manifest_cache = {}
# True while tests run (set by odoo.tests.loader): mail is then not sent, as in Odoo
current_test = None


def initialize_sys_path():
    """Extend `odoo.addons.__path__`: the tree's own addons, the data dir's, then --addons-path."""
    paths = [os.path.dirname(odoo.addons.__file__)]
    data_addons = config.addons_data_dir
    if os.access(data_addons, os.R_OK):
        paths.append(data_addons)
    paths += [p for p in (config.get("addons_path") or "").split(",") if p]
    for path in paths:
        if path not in odoo.addons.__path__:
            odoo.addons.__path__.append(path)
    return list(odoo.addons.__path__)


def get_module_path(module):
    """Folder of `module` in the first addons path holding it, or None."""
    for path in odoo.addons.__path__:
        folder = os.path.join(path, module)
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            return folder
    return None


def get_modules():
    """Names of every module found on the addons paths."""
    names = set()
    for path in odoo.addons.__path__:
        if os.path.isdir(path):
            names.update(
                name for name in os.listdir(path)
                if os.path.isfile(os.path.join(path, name, MANIFEST))
            )
    return sorted(names)


def get_manifest(module):
    """The manifest of `module` with Odoo's defaults, or {} when not found."""
    if module not in _manifest_cache:
        path = get_module_path(module)
        _manifest_cache[module] = load_manifest(module, path) if path else {}
    return _manifest_cache[module]


def load_manifest(module, path):
    """Read the manifest like Odoo: a literal dict updating the defaults.

    A manifest that is not a dict fails here (ValueError from dict.update), which
    fails the whole database initialisation, as with real Odoo.
    """
    with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
        manifest = copy.deepcopy(_DEFAULTS)
        manifest.update(ast.literal_eval(f.read()))
    manifest.setdefault("name", module)
    manifest["version"] = adapt_version(str(manifest["version"]))
    manifest["addons_path"] = os.path.dirname(path)
    manifest["path"] = path
    if not manifest["depends"] and module != "base":
        manifest["depends"] = ["base"]
    return manifest


def adapt_version(version):
    """Prefix the series: '1.0' -> '18.0.1.0'; '18.0.1.0' stays."""
    serie = release.major_version
    if version == serie or not version.startswith(serie + "."):
        version = f"{serie}.{version}"
    return version


def parse_version(version):
    """A comparable key for dotted versions."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def dependency_depth(name, depths, seen=()):
    """Length of the longest chain of dependencies below `name` (0 for base),
    memoised in `depths`; modules load in increasing depth."""
    if name not in depths:
        parents = [d for d in get_manifest(name).get("depends", []) if d not in seen]
        depths[name] = 1 + max((dependency_depth(p, depths, (*seen, name)) for p in parents), default=-1)
    return depths[name]


def load_openerp_module(module):
    """Import `odoo.addons.<module>`: its Python code runs, its models register."""
    try:
        importlib.import_module(f"odoo.addons.{module}")
    except Exception:
        _logger.critical("Couldn't load module %s", module)
        raise


def run_post_load(module):
    """Call the manifest's `post_load` function of `module` (imported first), if any."""
    hook = get_manifest(module).get("post_load")
    if not hook:
        return
    load_openerp_module(module)
    getattr(importlib.import_module(f"odoo.addons.{module}"), hook)()


def check_manifest_dependencies(manifest):
    """Fail like Odoo when an external Python dependency is missing."""
    for requirement in manifest.get("external_dependencies", {}).get("python", []):
        check_python_external_dependency(requirement)


def check_python_external_dependency(requirement):
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    try:
        importlib.metadata.version(name)
        return
    except importlib.metadata.PackageNotFoundError as exc:
        error = exc
    try:
        importlib.import_module(name)
        _logger.warning(
            "python external dependency on '%s' does not appear to be a valid PyPI package. "
            "Using a PyPI package name is recommended.", name,
        )
        return
    except ImportError:
        pass
    raise Exception(f"External dependency {requirement} not installed: {error}") from error
