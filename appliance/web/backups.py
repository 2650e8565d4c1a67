"""The Backups tab of production and staging branches: the list and its chart, "Back up
now", downloads (the database manager's zip, the native dump), restore into production
or a staging branch, the repository's password notice, off-box copies and the latest
verification. Imports arrive through web/uploads.py.

The tab is at /projects/<name>/backups/<branch> (branch names may contain '/': the tab
is the only GET there, its actions are POSTs ending in a fixed word). One backup's pages
are under /backups/<id>. A development branch has no tab: its URL is a 404.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from appliance import policy
from appliance.errors import NotFound, UserError
from appliance.jobs import backup as backup_jobs
from appliance.store import backup_listing
from appliance.store import backups as backups_store
from appliance.store import projects as store_projects
from appliance.store import uploads as uploads_store
from appliance.web import backup_chart, branches, guard
from appliance.web.common import (config, current_user, db, is_htmx, refusals_back_to, render,
                                  require_access, services, visible_branch)

log = logging.getLogger(__name__)

blueprint = Blueprint("backups", __name__)

STAGES = ("production", "staging")
# While a backup is queued or running, the list asks again this often (seconds).
POLL_SECONDS = 2
FORMATS = {"zip": ("application/zip", "zip"), "dump": ("application/octet-stream", "dump")}
# What a download's plain filename keeps as it is (anything else becomes "_").
UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def tab_page(name: str, branch: str) -> str:
    return url_for("backups.tab", name=name, branch=branch)


def backup_branch(conn, name: str, branch: str) -> tuple[dict, dict]:
    """The project and its branch, if visible and one that has backups; NotFound else."""
    project, row = visible_branch(conn, name, branch)
    if row["stage"] not in STAGES:
        raise NotFound(f"{branch} has no backups")
    return project, row


def visible_backup(conn, backup_id: int) -> tuple[dict, dict]:
    """The backup and its project if the current user may see them; NotFound otherwise."""
    row = backups_store.get(conn, backup_id)
    project = store_projects.project_by_id(conn, row["project_id"])
    require_access(conn, project)
    return row, project


# -- the tab -----------------------------------------------------------------------------

@blueprint.get("/projects/<name>/backups/<path:branch>")
@guard.project("backup_download")
def tab(name: str, branch: str):
    with db().transaction() as conn:
        project, row = backup_branch(conn, name, branch)
        listing = _listing(conn, project, row)
        if not is_htmx():
            listing.update(_tab_extras(conn, project))
    if not is_htmx():
        listing["targets"] = _copy_targets()
    return render("branch.html", "_backups_list.html", project=project, branch=row,
                  tab="backups", tabs=branches.TABS, **listing)


def _listing(conn, project: dict, branch: dict) -> dict:
    rows = backups_store.list_backups(conn, project, branch)
    pending = uploads_store.pending_backups(conn, branch["id"])
    refused = [task for task in uploads_store.failed_backup_tasks(conn, branch["id"], 1)
               if not rows or task["created_at"] > rows[0]["started_at"]]
    return {"backups": rows, "pending": pending, "refused_task": refused[0] if refused else None,
            "verified": backup_listing.verifications_by_backup(conn, [r["id"] for r in rows]),
            "chart": backup_chart.size_chart(rows), "human_bytes": backup_chart.human_bytes,
            "polling": bool(pending) or any(r["state"] == "running" for r in rows),
            "poll_seconds": POLL_SECONDS}


def _tab_extras(conn, project: dict) -> dict:
    """What the whole page shows around the list."""
    user = current_user()
    return {"verification": latest_verification(conn, project["id"]),
            "targets_branches": backup_listing.restore_targets(conn, project["id"]),
            "password_path": backup_jobs.password_path(config()) if user["is_admin"] else None,
            "chunk_bytes": config().backup.upload_chunk_bytes,
            "upload_max_bytes": config().backup.upload_max_bytes}


def latest_verification(conn, project_id: int) -> dict | None:
    from appliance.jobs import backup_verify
    return backup_verify.latest(conn, project_id)


def _copy_targets() -> list[dict]:
    from appliance.jobs import backup_copies
    return backup_copies.status(services())


@blueprint.app_template_global("failed_verification")
def failed_verification(project: dict) -> dict | None:
    """The project's latest verification when it failed (the project page's red notice)."""
    with db().transaction() as conn:
        found = latest_verification(conn, project["id"])
    return found if found and found.get("state") == "failed" else None


@blueprint.post("/projects/<name>/backups/<path:branch>/now")
@guard.project("backup_download")
@refusals_back_to(tab_page)
def now(name: str, branch: str):
    """Back the branch up in the task pool (the list shows it queued, then running)."""
    with db().transaction() as conn:
        _project, row = backup_branch(conn, name, branch)
        conn.execute("SELECT 1 FROM branches WHERE id = %s FOR UPDATE", (row["id"],))
        if uploads_store.pending_backups(conn, row["id"]):
            raise UserError(f"a backup of {branch} is already on its way")
        task = uploads_store.request_backup(conn, row, current_user())
    log.info("%s asked for a backup of %s/%s (task %s)", current_user()["name"], name, branch,
             task["id"])
    flash(f"Backup of {branch} queued: it appears below when it starts.")
    return redirect(tab_page(name, branch), code=303)


# -- one backup --------------------------------------------------------------------------

@blueprint.get("/backups/<int:backup_id>/download")
@guard.project("backup_download")
def download(backup_id: int):
    """The backup as the database manager's zip (?format=zip, the default) or as
    pg_dump's custom dump (?format=dump), streamed as it is made. A failure before the
    first bytes is an error page; one after them cuts the connection, so a partial file
    never looks whole."""
    kind = request.args.get("format", "zip")
    if kind not in FORMATS:
        abort(404)
    with db().transaction() as conn:
        row, project = visible_backup(conn, backup_id)
    if row["state"] != "done" or row["forgotten_at"] is not None:
        raise UserError(f"backup #{backup_id} is {row['state']}"
                        f"{' and forgotten' if row['forgotten_at'] else ''}: nothing to "
                        "download")
    from appliance.jobs import backup_export
    stream = (backup_export.zip_stream if kind == "zip" else backup_export.dump_stream)(
        services(), row)
    stream = iter(stream)
    first = next(stream, b"")  # fails here, as an error page, when it cannot start
    log.info("%s downloads backup #%d of %s as %s", current_user()["name"], backup_id,
             project["name"], kind)
    mimetype, extension = FORMATS[kind]
    filename = (f"{project['name']}-{row['branch'] or 'backup'}-"
                f"{row['started_at']:%Y%m%d-%H%M}-{backup_id}.{extension}").replace("/", "_")
    return Response(_guarded(backup_id, first, stream), mimetype=mimetype, headers={
        "Content-Disposition": attachment(filename),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def attachment(filename: str) -> str:
    """Content-Disposition of a download named `filename` (from a branch name, which may
    hold quotes, semicolons or any Unicode): a plain ASCII name for old clients, and the
    exact name in RFC 5987's filename*, which browsers prefer."""
    plain = UNSAFE_IN_FILENAME.sub("_", filename)
    return (f'attachment; filename="{plain}"; '
            f"filename*=UTF-8''{urllib.parse.quote(filename, safe='')}")


def _guarded(backup_id: int, first: bytes, stream):
    """The stream's bytes; a failure is logged and raised, which makes the server cut
    the connection (the response has no length: the client sees it incomplete)."""
    sent = len(first)
    try:
        yield first
        for block in stream:
            sent += len(block)
            yield block
    except Exception:
        log.exception("download of backup #%d failed after %d bytes: connection cut",
                      backup_id, sent)
        raise
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def restore_page(backup_id: int) -> str:
    return url_for("backups.restore", backup_id=backup_id, branch=request.form.get("branch"))


@blueprint.get("/backups/<int:backup_id>/restore")
@guard.project("backup_restore", policy.ANY_STAGE)
def restore(backup_id: int):
    """The confirmation: which branch's data this backup replaces, said in words."""
    with db().transaction() as conn:
        row, project = visible_backup(conn, backup_id)
        targets = backup_listing.restore_targets(conn, project["id"])
    if not targets:
        raise UserError(f"{project['name']} has no production or staging branch")
    wanted = request.args.get("branch") or row["branch"]
    target = next((t for t in targets if t["name"] == wanted), targets[0])
    return render_template("backups_restore.html", project=project, backup=row,
                           targets=targets, target=target,
                           human_bytes=backup_chart.human_bytes)


@blueprint.post("/backups/<int:backup_id>/restore")
@guard.project("backup_restore", policy.ANY_STAGE)
@refusals_back_to(restore_page)
def restore_now(backup_id: int):
    branch_name = request.form.get("branch", "")
    with db().transaction() as conn:
        _row, project = visible_backup(conn, backup_id)
        try:
            target = store_projects.get_branch(conn, project, branch_name)
        except NotFound as exc:  # chosen in the form: a mistake to show
            raise UserError(str(exc)) from None
        policy.require(conn, current_user(), project, "backup_restore", target["stage"])
    from appliance.jobs import restores
    build = restores.request_restore(services(), project, backup_id, branch_name,
                                     current_user())
    log.info("%s restores backup #%d into %s/%s: build #%d", current_user()["name"],
             backup_id, project["name"], branch_name, build["id"])
    flash(f"Restore of backup #{backup_id} into {branch_name} queued: build #{build['id']}.")
    return redirect(url_for("builds.build", build_id=build["id"]), code=303)
