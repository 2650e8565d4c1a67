"""Garbage collection of builds, run on a schedule.

Development builds older than [builds] dev_keep_days are stopped and their database,
filestore, checkout, containers (a sleeping build's stopped server too) and caught mail
removed; the build row stays, marked
dropped, with its logs. Each staging branch keeps its latest build and drops older
ones. Nothing of production is ever collected. Every drop is an event in the branch's history.
"""

from __future__ import annotations

import logging
import shutil

from appliance.jobs import containers
from appliance.jobs import mail as mail_jobs
from appliance.store import builds as builds_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)


def collect(svc) -> list[int]:
    """Drop what is due; returns the ids of the builds dropped."""
    with svc.db.transaction() as conn:
        due = builds_store.collectable(conn, svc.config.builds.dev_keep_days * 86400)
    dropped = []
    for build in due:
        try:
            drop(svc, build)
            dropped.append(build["id"])
        except Exception:  # one bad build must not stop the others; retried next run
            log.exception("could not drop build %s; trying again at the next run", build["id"])
    return dropped


def drop(svc, build: dict) -> None:
    if build["stage"] == "production":
        raise ValueError("production builds are never collected")
    svc.docker.remove_all(build["id"])
    if build["database"] and not _shared(svc, build):
        svc.postgres.drop_database(build["database"])
    paths = containers.build_paths(svc.config, build["id"])
    for folder in (paths.src, paths.data):
        shutil.rmtree(folder, ignore_errors=True)
    caught = mail_jobs.drop_build_mail(svc, build["id"])
    age = "older than the development retention" if build["stage"] == "development" \
        else "an older staging build"
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], BuildState.DROPPED, host_port=None)
        builds_store.add_event(conn, project_id=build["project_id"], branch_id=build["branch_id"],
                               build_id=build["id"], kind="gc",
                               message=f"build #{build['id']} dropped: {age}",
                               data={"mails_deleted": caught})
    log.info("build %s dropped (%s)", build["id"], build["stage"])


def _shared(svc, build: dict) -> bool:
    """Is the database also a newer build's (staging "update" hands it over)?"""
    with svc.db.transaction() as conn:
        return builds_store.database_shared(conn, build["database"], build["id"])
