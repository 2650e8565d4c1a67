"""Garbage collection of builds, run on a schedule.

Development builds older than [builds] dev_keep_days are stopped and their database,
filestore, checkout, containers and caught mail removed; the build row stays, marked
dropped, with its logs. Each staging branch keeps its latest build and drops older
ones. Nothing of production is ever collected. Every drop is an event in the branch's history.
"""

from __future__ import annotations

import logging
import shutil

from appliance.jobs import containers
from appliance.jobs import mail as mail_jobs
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)


def collect(svc) -> list[int]:
    """Drop what is due; returns the ids of the builds dropped."""
    with svc.db.transaction() as conn:
        due = conn.execute(
            """SELECT b.* FROM builds b
               WHERE b.stage = 'development' AND b.state IN ('running', 'stopped', 'failed')
                 AND b.created_at < now() - make_interval(secs => %s)
               UNION
               SELECT b.* FROM builds b JOIN branches br ON br.id = b.branch_id
               WHERE b.stage = 'staging' AND br.stage = 'staging'
                 AND b.state IN ('running', 'stopped', 'failed', 'done')
                 AND b.id < (SELECT max(id) FROM builds
                             WHERE branch_id = b.branch_id AND state = 'running')
               ORDER BY id""", (svc.config.builds.dev_keep_days * 86400,)).fetchall()
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
    for info in svc.docker.find(build_id=build["id"]):
        svc.docker.remove(info.id)
    if build["database"] and not _shared(svc, build):
        svc.postgres.drop_database(build["database"])
    paths = containers.build_paths(svc.config, build["id"])
    for folder in (paths.src, paths.data):
        shutil.rmtree(folder, ignore_errors=True)
    caught = mail_jobs.drop_build_mail(svc, build["id"])
    age = "older than the development retention" if build["stage"] == "development" \
        else "an older staging build"
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, build["id"], "dropped", host_port=None)
        builds_store.add_event(conn, project_id=build["project_id"], branch_id=build["branch_id"],
                               build_id=build["id"], kind="gc",
                               message=f"build #{build['id']} dropped: {age}",
                               data={"mails_deleted": caught})
    log.info("build %s dropped (%s)", build["id"], build["stage"])


def _shared(svc, build: dict) -> bool:
    """Is the database also a newer build's (staging "update" hands it over)?"""
    with svc.db.transaction() as conn:
        return conn.execute("SELECT 1 FROM builds WHERE database = %s AND id <> %s",
                            (build["database"], build["id"])).fetchone() is not None
