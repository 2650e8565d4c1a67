"""A build's Shell tab: the terminal page, the one-time ticket it opens the WebSocket
with, and production's recordings.

The terminal itself is not served here: waitress cannot upgrade a connection, so the
page connects to the daemon's WebSocket server (appliance.shell.websocket), through the
proxy's /-/shell/ path or, without a proxy, on its loopback port. The page first POSTs
for a ticket (signed in, CSRF token, the right to a shell on the build's stage): a
random string valid TICKET_SECONDS, kept hashed, for this user and this build, used
once by the WebSocket server, which checks everything again before a process starts.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, abort, jsonify, make_response, render_template, send_file

from appliance.shell import cast
from appliance.shell.websocket import browser_url, origin_of
from appliance.store import shell as shell_store
from appliance.web import guard
from appliance.web.common import config, current_user, db, visible_build

log = logging.getLogger(__name__)

blueprint = Blueprint("shell", __name__)


def _running(build: dict) -> bool:
    return build["state"] == "running" and not build.get("asleep")


def content_policy(socket_url: str) -> str:
    """The app's policy, plus the WebSocket's origin when it is not the page's own
    (no proxy: the shell server's own loopback port)."""
    from appliance.web.app import SECURITY_HEADERS  # the app imports this module
    base = SECURITY_HEADERS["Content-Security-Policy"]
    public = origin_of(config().server.public_url)
    http_origin = origin_of(socket_url.replace("ws", "http", 1))
    if http_origin == public:
        return base
    parts = urlsplit(socket_url)
    return f"{base}; connect-src 'self' {parts.scheme}://{parts.netloc}"


@blueprint.get("/builds/<int:build_id>/shell")
@guard.project("shell")
def page(build_id: int):
    with db().transaction() as conn:
        build, project = visible_build(conn, build_id)
    response = make_response(render_template("shell.html", build=build, project=project,
                                             running=_running(build), shell_tab=True))
    response.headers["Content-Security-Policy"] = content_policy(browser_url(config()))
    return response


@blueprint.post("/builds/<int:build_id>/shell/ticket")
@guard.project("shell")
def ticket(build_id: int):
    with db().transaction() as conn:
        build, _project = visible_build(conn, build_id)
        if not _running(build):
            return jsonify(error=f"build #{build_id} is {build['state']}: start its "
                                 "server first"), 409
        issued = shell_store.create_ticket(conn, current_user()["id"], build_id)
    log.info("%s asked for a terminal on build #%s", current_user()["name"], build_id)
    return jsonify(ticket=issued, url=browser_url(config()),
                   seconds=shell_store.TICKET_SECONDS)


@blueprint.get("/builds/<int:build_id>/shell/<int:session_id>.cast")
@guard.project("shell")
def recording(build_id: int, session_id: int):
    with db().transaction() as conn:
        visible_build(conn, build_id)
        session = shell_store.get_session(conn, session_id)
    if session is None or session["build_id"] != build_id or not session["recorded"]:
        abort(404)
    try:
        handle = cast.open_for_reading(config(), session_id)
    except (FileNotFoundError, OSError):
        abort(404)
    return send_file(handle, mimetype="application/x-asciicast", as_attachment=True,
                     download_name=f"build-{build_id}-shell-{session_id}.cast", max_age=0)
