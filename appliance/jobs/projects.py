"""Creating a project: its row, its bare git repository and its PostgreSQL role."""

from __future__ import annotations

import logging
import re
import shutil

from appliance.errors import UserError
from appliance.runtime import git
from appliance.store import projects as projects_store
from appliance.store import users as users_store

log = logging.getLogger(__name__)

# An Odoo module's technical name: its folder's name, a Python identifier.
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def module_list(text: str) -> str:
    """The modules to install, as stored: names separated by commas (spaces allowed in
    the input), each once. '' means every module of the branch."""
    names = [name for name in re.split(r"[\s,]+", text or "") if name]
    bad = [name for name in names if not MODULE_NAME.match(name)]
    if bad:
        raise UserError(f"not a module name: {', '.join(repr(n) for n in bad[:5])} (a module "
                        "is named by its folder: letters, digits and _, e.g. sale_stock)")
    return ",".join(dict.fromkeys(names))


def create(svc, name: str, odoo_version: str | None = None, *, modules: str = "",
           members=(), demo: bool = False) -> dict:
    """All or nothing: a failure after the row is written removes the repository again."""
    cfg = svc.config
    version = odoo_version or cfg.odoo.default_version
    cfg.odoo_version(version)  # refuses an unconfigured version
    modules = module_list(modules)
    repo = cfg.paths.repos / f"{projects_store.validate_name(name)}.git"
    if repo.exists():
        raise UserError(f"a repository for {name!r} already exists")
    with svc.db.transaction() as conn:
        project = projects_store.create_project(conn, name, version, cfg.database.role_prefix,
                                                modules=modules, demo=demo)
        for member in members:
            users_store.add_member(conn, project["id"],
                                   users_store.user_by_name(conn, member)["id"])
        try:
            git.init_repo(repo, cfg.paths.hooks)
            svc.postgres.ensure_role(project["db_role"], project["db_password"])
        except Exception:
            shutil.rmtree(repo, ignore_errors=True)
            raise
    log.info("project %s created (Odoo %s)", name, version)
    return project
