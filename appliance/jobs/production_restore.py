"""The pieces of a restore or an import into production (production.restore_deploy runs
them in this order, under the project's lock, as a deploy):

checkout/image  the branch's current head, as a rebuild
backup          a "safety" backup of production as it is (none when it has no database)
load            the source checked again (a backup of another major version fails here
                too) and loaded into a side database, <live>_load_<build id>, and a side
                filestore folder beside production's data dir that no container mounts,
                while production still serves
plan            the modules whose version in the code is above the loaded data's
maintenance     production's server stopped
snapshot        the live database and filestore copied, as a full deploy does
swap            the live database dropped and the side one renamed in its place; the side
                filestore put in place of the live one; after an import (not a restore of
                our own backup), scheduled actions and outgoing mail servers are turned
                off, as Odoo.sh does, and the history says how many
update          -u / -i of the planned modules (update.log)
start/health    the server on the restored data answers
On any failure after maintenance, the snapshot is put back and the previous revision
serves again, as after a failed full deploy. The side database and folder never outlive
the build.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from appliance import layout
from appliance.jobs import backup, common, containers, restores
from appliance.jobs.loaders import Loaded
from appliance.jobs.plan import Plan, make_plan
from appliance.runtime import filestore

log = logging.getLogger(__name__)

STEPS = ["checkout", "image", "backup", "load", "plan", "maintenance", "snapshot", "swap",
         "update", "start", "health"]


@dataclass(frozen=True)
class Side:
    """Where the source is loaded before it replaces production."""

    database: str
    files: Path


def side(cfg, project: dict, build_id: int) -> Side:
    live = layout.production_database(cfg, project["name"])
    # Beside production's data dir, not in it: its containers never see this folder.
    folder = layout.production_data_dir(cfg, project["name"]).parent / f"load-{int(build_id)}"
    return Side(database=f"{live}_load_{int(build_id)}", files=folder)


def discard_side(svc, loaded: Side) -> None:
    """The side database and folder go (after the swap, nothing is left of them)."""
    svc.postgres.drop_database(loaded.database)
    filestore.remove_tree(loaded.files)


def safety_backup(svc, project: dict, user: dict | None = None) -> str:
    """A backup of production as it is, before anything of it is replaced."""
    row = backup.create(svc, project, None, "safety", user)
    return f"safety backup #{row['id']} ({(row['dump_bytes'] or 0) // 2**20} MB dump)"


def load(svc, project: dict, build: dict, into: Side) -> Loaded:
    """Check the source again and load it into the side database and folder."""
    loader = restores.loader_for(svc, build)
    loader.check(project["odoo_version"])  # a wrong major version fails the build here too
    discard_side(svc, into)  # left by a load a stop cut short
    svc.postgres.ensure_role(project["db_role"], project["db_password"])
    return loader.load(svc, into.database, project["db_role"], into.files)


def plan(svc, setup: containers.OdooSetup, code: common.Code, database: str) -> Plan:
    """What the loaded data needs of this revision: -u of the modules whose version went
    up since the data was saved, -i of those it lacks."""
    installed = svc.postgres.module_versions(database)
    return make_plan(installed, code.manifests, code.modules, setup.project["odoo_version"])


def swap(svc, snap: layout.ProductionSnapshot, loaded: Side) -> str:
    """The loaded database and filestore become production's (its server is stopped).
    Production's data dir was its containers' to write: a link where the filestore's
    folders should be (to a host folder the root daemon would move the files into) is
    refused before anything changes."""
    filestore.check_no_link(snap.data_dir, snap.live_files)
    svc.postgres.drop_database(snap.live_database)
    svc.postgres.rename_database(loaded.database, snap.live_database)
    if loaded.files.exists():
        filestore.replace_tree(loaded.files, snap.live_files)
    else:
        filestore.remove_tree(snap.live_files)
    return f"{loaded.database} is now {snap.live_database}"


def after_import(svc, build: dict, database: str) -> str:
    """An imported database's scheduled actions and outgoing mail servers go off."""
    crons, servers = svc.postgres.deactivate_crons_and_mail_servers(database)
    message = (f"imported database: {crons} scheduled action(s) and {servers} outgoing "
               "mail server(s) deactivated; turn on again those this production needs")
    common.event(svc, build, "import", message, {"crons": crons, "mail_servers": servers})
    return message


def undo_first(svc, snap: layout.ProductionSnapshot) -> None:
    """Production had no database before the swap: it has none again."""
    svc.postgres.drop_database(snap.live_database)
    filestore.remove_tree(snap.live_files)
