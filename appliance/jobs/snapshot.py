"""Production's snapshot: its database and filestore as they were before a full deploy,
put back when the deploy fails (production) or was cut short by a restart (reconcile).
Where it lives is layout.production_snapshot's to say."""

from __future__ import annotations

import logging

from appliance.jobs import common
from appliance.layout import ProductionSnapshot
from appliance.runtime import filestore

log = logging.getLogger(__name__)


def take(svc, project: dict, snap: ProductionSnapshot) -> str:
    """Copy the (stopped) production database and hard-link its filestore; returns what
    was copied. Refused before anything is copied when the disk is short."""
    size = common.check_room(svc, snap.live_database, snap.data_dir)
    svc.postgres.clone_database(snap.live_database, snap.database, project["db_role"])
    files = (filestore.hardlink_copy(snap.live_files, snap.files)
             if snap.live_files.exists() else 0)
    return f"{snap.database} ({size // (1024 * 1024)} MB), {files} file(s)"


def restore(svc, snap: ProductionSnapshot, build: dict, reason: str) -> bool:
    """Put the snapshot back in place of the production database and filestore, noted in
    the branch's history with `reason`. False when there is none (the deploy failed
    before taking it: nothing was changed)."""
    if not svc.postgres.exists(snap.database):
        return False
    log.warning("build %s: rolling back production (%s)", build["id"], reason)
    if snap.files.exists():  # before anything changes: the files go back through no link
        filestore.check_no_link(snap.data_dir, snap.live_files)
    svc.postgres.drop_database(snap.live_database)
    svc.postgres.rename_database(snap.database, snap.live_database)
    if snap.files.exists():
        filestore.replace_tree(snap.files, snap.live_files)
    common.event(svc, build, "rollback",
                 f"{reason}: database and filestore restored from the snapshot")
    return True


def discard(svc, snap: ProductionSnapshot) -> None:
    """The deploy went well: the snapshot goes."""
    svc.postgres.drop_database(snap.database)
    filestore.remove_tree(snap.files)
