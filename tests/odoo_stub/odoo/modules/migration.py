"""Migration scripts: `<module>/migrations/<version>/{pre,post,end}-*.py`.

A version folder runs when it is above the installed version and not above the
new one (`0.0.0` runs at every update). Each script defines `migrate(cr, version)`
and is called with the installed version: `pre-` before the module's tables and
data are updated, `post-` after, `end-` once every module of the run is loaded.
"""

import glob
import importlib.util
import logging
import os

from .module import adapt_version, parse_version

_logger = logging.getLogger(__name__)

_STAGE_FORMAT = {"pre": "[>%s]", "post": "[%s>]", "end": "[$%s]"}


def migrate_module(cr, module, path, installed_version, new_version, stage):
    for version, folder in _version_folders(path, installed_version, new_version):
        for script in sorted(glob.glob(os.path.join(folder, f"{stage}-*.py"))):
            name = os.path.basename(script)[:-3]
            _logger.info("module %s: Running migration %s %s", module, _STAGE_FORMAT[stage] % version, name)
            _load_script(name, script).migrate(cr, installed_version)


def _version_folders(path, installed_version, new_version):
    root = os.path.join(path, "migrations")
    if not installed_version or not os.path.isdir(root):
        return []
    chosen = []
    for version in os.listdir(root):
        folder = os.path.join(root, version)
        if not os.path.isdir(folder):
            continue
        full = parse_version(adapt_version(version))
        if version == "0.0.0" or parse_version(installed_version) < full <= parse_version(new_version):
            chosen.append((full, version, folder))
    return [(version, folder) for _key, version, folder in sorted(chosen)]


def _load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script
