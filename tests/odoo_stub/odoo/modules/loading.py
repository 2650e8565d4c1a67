"""Loading modules into a database: mark (-i/-u), order, import, install, test.

Like Odoo, each module is committed once loaded, so a failure in a later module
leaves the earlier ones installed; the failing module's work is rolled back and
the transient states ('to install', 'to upgrade') are reset.
"""

import importlib
import logging
import os
import time

from .. import api
from ..exceptions import UserError
from ..tools import config
from ..tools.convert import convert_file
from . import db, migration
from . import module as modules

_logger = logging.getLogger(__name__)
_registry_logger = logging.getLogger("odoo.modules.registry")
_module_logger = logging.getLogger("odoo.addons.base.models.ir_module")

_TRANSIENT_RESET = (
    "UPDATE ir_module_module SET state = CASE state WHEN 'to install' THEN 'uninstalled' "
    "WHEN 'to upgrade' THEN 'installed' ELSE state END "
    "WHERE state IN ('to install', 'to upgrade')"
)


class TestReport:
    """Test counts of one run: at_install tests of each module, then post_install."""

    def __init__(self):
        self.failures = self.errors = self.tests_run = 0
        self.at_install_failed = False

    def add(self, result, at_install):
        self.failures += len(result.failures)
        self.errors += len(result.errors)
        self.tests_run += result.testsRun
        if at_install and not result.wasSuccessful():
            self.at_install_failed = True

    @property
    def failed(self):
        return bool(self.failures or self.errors)


def load_modules(registry, report):
    """Install/update what the options ask for and load every installed module."""
    cr = registry.cursor()
    env = api.Environment(cr, registry=registry)
    try:
        _prepare(cr)
        _load_graph(env, registry, report)
    except Exception:
        cr.rollback()
        cr.execute(_TRANSIENT_RESET)
        cr.commit()
        _logger.warning("Transient module states were reset")
        _registry_logger.error("Failed to load registry")
        raise
    finally:
        cr.close()


def _prepare(cr):
    """Initialise an empty database, refresh the module list, mark modules."""
    init, update = config.module_list("init"), config.module_list("update")
    new_db = not db.is_initialized(cr)
    if new_db:
        db.initialize(cr, demo=not without_demo())
    if init or update or new_db:
        _update_list(cr)
    if init:
        _mark_install(cr, init)
    if update:
        _mark_upgrade(cr, update)
    cr.commit()


def _update_list(cr):
    """Record every module of the addons paths (reading all their manifests)."""
    _logger.info("updating modules list")
    _module_logger.info("ALLOW access to module.update_list on [] to user __system__ #1 via n/a")
    for name in modules.get_modules():
        manifest = modules.get_manifest(name)
        state = "uninstalled" if manifest["installable"] else "uninstallable"
        cr.execute(
            "INSERT INTO ir_module_module (name, shortdesc, author, summary, state, create_date, write_date) "
            "VALUES (%s, %s, %s, %s, %s, now() at time zone 'UTC', now() at time zone 'UTC') "
            "ON CONFLICT (name) DO UPDATE SET shortdesc = EXCLUDED.shortdesc, summary = EXCLUDED.summary",
            (name, manifest["name"], manifest["author"], manifest["summary"], state),
        )


def _states(cr):
    cr.execute("SELECT name, state FROM ir_module_module")
    return dict(cr.fetchall())


def _mark_install(cr, names):
    states = _states(cr)
    if "all" in names:
        _mark_upgrade(cr, ["all"])
        names = [n for n in names if n != "all"]
    invalid = [n for n in names if states.get(n) not in ("uninstalled", "installed", "to install", "to upgrade")]
    if invalid:
        _logger.warning("invalid module names, ignored: %s", ", ".join(invalid))
    wanted = [n for n in names if states.get(n) == "uninstalled"]
    todo = _with_dependencies(wanted, states)
    if not todo:
        return
    shortdescs = [modules.get_manifest(n)["name"] for n in wanted]
    _module_logger.info("ALLOW access to module.button_install on %s to user __system__ #1 via n/a", shortdescs)
    demo = _demo_wanted(cr)
    for name in todo:
        cr.execute(
            "UPDATE ir_module_module SET state = 'to install', demo = %s WHERE name = %s",
            (demo, name),
        )


def _with_dependencies(names, states):
    """`names` plus their uninstalled dependencies; fails like Odoo on a missing one."""
    todo, stack = [], list(names)
    while stack:
        name = stack.pop()
        if name in todo:
            continue
        todo.append(name)
        manifest = modules.get_manifest(name)
        _check_external_dependencies(name, manifest)
        for dependency in manifest["depends"]:
            if states.get(dependency) in (None, "uninstallable"):
                raise UserError(
                    f'You try to install module "{name}" that depends on module "{dependency}".\n'
                    "But the latter module is not available in your system."
                )
            if states[dependency] == "uninstalled":
                stack.append(dependency)
    return todo


def _check_external_dependencies(name, manifest):
    try:
        modules.check_manifest_dependencies(manifest)
    except Exception as exc:
        raise UserError(
            f'Unable to install module "{name}" because an external dependency is not met: {exc}'
        ) from exc


def without_demo():
    """--without-demo: `all` or any non-empty value disables demo data."""
    value = config.get("without_demo")
    return bool(value) and str(value).lower() not in ("false", "0", "none")


def _demo_wanted(cr):
    """Demo data unless --without-demo, and only if base has (or gets) it."""
    if without_demo():
        return False
    cr.execute("SELECT demo, state FROM ir_module_module WHERE name = 'base'")
    row = cr.fetchone()
    return bool(row and (row[0] or row[1] == "to install"))


def _mark_upgrade(cr, names):
    """Installed modules in `names`, and the installed modules depending on them."""
    states = _states(cr)
    installed = sorted(n for n, s in states.items() if s == "installed")
    chosen = installed if "all" in names else [n for n in names if states.get(n) == "installed"]
    if not chosen:
        return
    shortdescs = [modules.get_manifest(n).get("name", n) for n in chosen]
    _module_logger.info("ALLOW access to module.button_upgrade on %s to user __system__ #1 via n/a", shortdescs)
    todo = set(chosen)
    changed = True
    while changed:
        dependents = {n for n in installed if set(modules.get_manifest(n).get("depends", [])) & todo}
        changed = not dependents <= todo
        todo |= dependents
    cr.execute("UPDATE ir_module_module SET state = 'to upgrade' WHERE name = ANY(%s)", (sorted(todo),))
    if "base" in todo:
        cr.execute(
            "UPDATE ir_module_module SET demo = (SELECT demo FROM ir_module_module WHERE name = 'base') "
            "WHERE state = 'to upgrade'"
        )


def _graph(cr):
    """(name, state, demo, installed version) of the modules to load, dependencies first."""
    cr.execute(
        "SELECT name, state, demo, latest_version FROM ir_module_module "
        "WHERE state IN ('installed', 'to install', 'to upgrade')"
    )
    rows = {row[0]: row for row in cr.fetchall()}
    missing = sorted(name for name in rows if not modules.get_manifest(name))
    for name in missing:
        logging.getLogger("odoo.modules.graph").warning("module %s: not installable, skipped", name)
    if missing:
        _logger.error("Some modules are not loaded, some dependencies or manifest may be missing: %s", missing)
    depths = {}
    for name in rows:
        if name not in missing:
            modules.dependency_depth(name, depths)
    return [rows[name] for name in sorted(depths, key=lambda n: (depths[n], n)) if name in rows]


def _load_graph(env, registry, report):
    graph = _graph(env.cr)
    start = time.time()
    _logger.info("loading %d modules...", len(graph))
    upgraded = []
    for index, (name, state, demo, installed_version) in enumerate(graph, start=1):
        modules.load_openerp_module(name)
        registry.load(name)
        if state in ("to install", "to upgrade"):
            _install(env, registry, report, name, state, demo, installed_version, (index, len(graph)))
        if state == "to upgrade":
            upgraded.append((name, installed_version))
    _end_migrations(env.cr, upgraded)
    _logger.info("%d modules loaded in %.2fs, 0 queries (+0 extra)", len(graph), time.time() - start)
    if report.at_install_failed:
        _logger.error("At least one test failed when loading the modules.")
    else:
        _logger.info("Modules loaded.")


def _install(env, registry, report, name, state, demo, installed_version, position):
    """Install or update one module, commit, then run its at_install tests."""
    start = time.time()
    manifest = modules.get_manifest(name)
    _logger.info("Loading module %s (%d/%d)", name, *position)
    upgrade = state == "to upgrade"
    if upgrade:
        migration.migrate_module(env.cr, name, manifest["path"], installed_version, manifest["version"], "pre")
    _registry_logger.info("module %s: creating or updating database tables", name)
    registry.init_models(env.cr, name, env)
    _load_data(env, name, manifest, "update" if upgrade else "init", demo)
    if upgrade:
        migration.migrate_module(env.cr, name, manifest["path"], installed_version, manifest["version"], "post")
    elif manifest["post_init_hook"]:
        _run_hook(env, name, manifest["post_init_hook"])
    env.cr.execute(
        "UPDATE ir_module_module SET state = 'installed', latest_version = %s, shortdesc = %s "
        "WHERE name = %s", (manifest["version"], manifest["name"], name),
    )
    _check_access_rules(env, registry, name)
    env.cr.commit()
    registry.updated_modules.append(name)
    result, test_time = _at_install_tests(name)
    _log_module_loaded(name, time.time() - start, test_time)
    if result is not None:
        report.add(result, at_install=True)
        if result.failures or result.errors:
            _logger.error("Module %s: %d failures, %d errors of %d tests",
                          name, len(result.failures), len(result.errors), result.testsRun)


def _end_migrations(cr, upgraded):
    """The `end-*` scripts of the updated modules, once every module is loaded."""
    for name, installed_version in upgraded:
        manifest = modules.get_manifest(name)
        migration.migrate_module(cr, name, manifest["path"], installed_version, manifest["version"], "end")
    cr.commit()


def _load_data(env, name, manifest, mode, demo):
    kinds = ["data"] + (["demo"] if demo else [])
    for kind in kinds:
        for filename in manifest[kind]:
            _logger.info("loading %s/%s", name, filename)
            pathname = os.path.join(manifest["path"], filename)
            convert_file(env, name, filename, pathname, mode, noupdate=kind == "demo")


def _run_hook(env, name, hook):
    getattr(importlib.import_module(f"odoo.addons.{name}"), hook)(env)


def _check_access_rules(env, registry, module):
    missing = []
    for model in registry.new_models(module):
        env.cr.execute(
            "SELECT 1 FROM ir_model_access a JOIN ir_model m ON m.id = a.model_id WHERE m.model = %s",
            (model,),
        )
        if not env.cr.fetchone():
            missing.append(model)
    if not missing:
        return
    lines = ["id,name,model_id:id,group_id:id,perm_read,perm_write,perm_create,perm_unlink"]
    for model in missing:
        table = registry[model]._table
        lines.append(f"{module}.access_{table},access_{table},{module}.model_{table},base.group_user,1,0,0,0")
    _logger.warning(
        "The models %s have no access rules in module %s, consider adding some, like:\n%s",
        missing, module, "\n".join(lines),
    )


def _at_install_tests(name):
    """(unittest result, seconds) of `name`'s at_install tests, (None, None) without tests."""
    if not config.get("test_enable"):
        return None, None
    from ..tests import loader  # the test framework is imported only when testing
    start = time.time()
    result = loader.run_tests([name], "at_install")
    return result, time.time() - start


def _log_module_loaded(name, elapsed, test_time):
    if test_time is None:
        _logger.info("Module %s loaded in %.2fs, 0 queries (+0 other)", name, elapsed)
    else:
        _logger.info("Module %s loaded in %.2fs (incl. %.2fs test), 0 queries (+0 test, +0 other)",
                     name, elapsed, test_time)
