"""A build's page (overview and logs), starting its server again, following its logs."""

from __future__ import annotations

import logging

from flask import (Blueprint, Response, abort, flash, redirect, render_template, request,
                   send_file, url_for)

from appliance import layout
from appliance.errors import NotFound, UserError
from appliance.runtime import buildfs
from appliance.store import builds as store_builds
from appliance.web import guard
from appliance.web import logstream
from appliance.web.common import (config, current_user, db, is_finished, is_htmx,
                                  refusals_back_to, render, visible_build)

log = logging.getLogger(__name__)

blueprint = Blueprint("builds", __name__)


def log_file(build_id: int, name: str):
    """The path of a build's log. Read it only through logstream, which refuses a link or
    a special file in its place: the server's log folder is written by its container."""
    try:
        return layout.log_path(config(), build_id, name)
    except NotFound:
        abort(404)


@blueprint.get("/builds/<int:build_id>")
@guard.project("view")
def build(build_id: int):
    with db().transaction() as conn:
        build, project = visible_build(conn, build_id)
        steps = store_builds.steps(conn, build_id)
        task = store_builds.pending_task(conn, build_id)
        if not is_htmx():
            # Someone looked at it: the server cap stops least recently used ones first.
            store_builds.touch(conn, build_id)
    return render("build.html", "_build_status.html", build=build, project=project,
                  steps=steps, task=task, url=layout.build_url(config(), build),
                  polling=not is_finished(build) or task is not None)


def build_page(build_id: int) -> str:
    return url_for("builds.build", build_id=build_id)


@blueprint.post("/builds/<int:build_id>/start")
@guard.project("rebuild")
@refusals_back_to(build_page)
def start(build_id: int):
    with db().transaction() as conn:
        build, _project = visible_build(conn, build_id)
        if build["state"] != "stopped":
            raise UserError(f"build #{build_id} is {build['state']}: only a stopped build "
                            "can be started")
        if store_builds.pending_task(conn, build_id) is None:
            store_builds.request_task(conn, "start_server", build_id, current_user()["id"])
            log.info("%s asked to start the server of build #%d", current_user()["name"],
                     build_id)
    flash("The server is starting.")
    return redirect(build_page(build_id), code=303)


@blueprint.get("/builds/<int:build_id>/logs/<name>")
@guard.project("logs")
def logs(build_id: int, name: str):
    path = log_file(build_id, name)
    with db().transaction() as conn:
        build, project = visible_build(conn, build_id)
    text, start, end, truncated = logstream.tail(path)
    return render_template("logs.html", build=build, project=project, name=name, text=text,
                           start=start, end=end, truncated=truncated,
                           exists=buildfs.exists(path.parent, path.name))


@blueprint.get("/builds/<int:build_id>/logs/<name>/stream")
@guard.project("logs")
def stream(build_id: int, name: str):
    path = log_file(build_id, name)
    with db().transaction() as conn:
        visible_build(conn, build_id)
    # EventSource reconnects by itself with Last-Event-ID: it wins over the URL's offset.
    offset = request.headers.get("Last-Event-ID") or request.args.get("offset") or "0"
    if not offset.isdigit():
        abort(400, description="offset must be a byte offset (a whole number)")
    # The module's constants are read now (not at import), so tests can shorten them.
    events = logstream.follow(path, int(offset), follow_seconds=logstream.FOLLOW_SECONDS,
                              poll_seconds=logstream.POLL_SECONDS,
                              keepalive_seconds=logstream.KEEPALIVE_SECONDS)
    return Response(events, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@blueprint.get("/builds/<int:build_id>/logs/<name>/download")
@guard.project("logs")
def download(build_id: int, name: str):
    path = log_file(build_id, name)
    with db().transaction() as conn:
        visible_build(conn, build_id)
    try:
        handle = logstream.open_log(path)
    except FileNotFoundError:
        abort(404)
    return send_file(handle, mimetype="text/plain", as_attachment=True,
                     download_name=f"build-{build_id}-{name}.log", max_age=0)
