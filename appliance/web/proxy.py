"""What Caddy asks the daemon: whether a name may have a certificate, the page a
stopped build's name answers, and the wake-up of a sleeping build.

Only Caddy reaches these: they live under /_proxy, which the UI's own route in Caddy
answers 404 from outside; the daemon itself listens on loopback. No session is read or
made here (the stopped page is served at a build's name, not the UI's).
"""

from __future__ import annotations

import threading

from flask import Blueprint, abort, render_template, request

from appliance import layout, policy
from appliance.errors import NotFound
from appliance.jobs import proxy as proxy_jobs
from appliance.jobs import sleep
from appliance.jobs.proxy_config import ACCESS_COOKIE, ORIGINAL_URI
from appliance.store import builds as builds_store
from appliance.store.states import BuildState
from appliance.web import guard
from appliance.web import build_access
from appliance.web.auth import ACCESS_SECONDS
from appliance.web.common import config, db, services

blueprint = Blueprint("proxy", __name__, url_prefix="/_proxy")

# A visit to a sleeping build waits this long for it (Odoo's start: a second or two for
# a small database, longer for a large one) before it gets the page that reloads itself.
HOLD_SECONDS = 30
# Visits held at once: each holds one of the web server's threads ([server] threads, 16
# by default); the others get the page that reloads itself at once.
MAX_HELD = 4
_held = threading.BoundedSemaphore(MAX_HELD)


@blueprint.get("/ask")
@guard.self_authenticated
def ask():
    """Caddy's on-demand TLS question: 200 for a name the appliance serves, else 404
    (and Caddy asks no certificate authority for it)."""
    domain = request.args.get("domain", "")
    if not domain or not proxy_jobs.serves(config(), db(), domain):
        abort(404)
    return "", 200


@blueprint.get("/stopped/<int:build_id>")
@guard.self_authenticated
def stopped(build_id: int):
    """The page of a build whose server is not running."""
    try:
        with db().transaction() as conn:
            build = builds_store.get_build(conn, build_id)
    except NotFound:
        abort(404)
    page = layout.build_page(config(), build_id)
    dropped = build["state"] in (BuildState.DROPPED, BuildState.DONE, BuildState.FAILED)
    return render_template("proxy_stopped.html", build=build, page=page,
                           dropped=dropped), 503, {"Retry-After": "30",
                                                   "Cache-Control": "no-store"}


@blueprint.get("/auth/<int:build_id>")
@guard.self_authenticated
def auth(build_id: int):
    """Caddy's forward_auth before each request to a development or staging build: the
    build is noted as used (it does not fall asleep). Only those whose role may open
    builds of its stage (appliance.policy, "open") go through, known by their access
    cookie; anyone else is sent to sign in. A project's public access opens its
    development builds to everyone, never its staging (a copy of production's data).
    Production is the live site: its names are not asked about."""
    sleep.touch(build_id)
    with db().transaction() as conn:
        row = conn.execute(
            """SELECT b.stage, p.* FROM builds b JOIN projects p ON p.id = b.project_id
               WHERE b.id = %s""", (build_id,)).fetchone()
        if row is None:
            abort(404)
        stage = row["stage"]
        if stage == "production" or (stage == "development" and row["public_access"]):
            return "", 204
        user = build_access.user_from(config(), conn, request.cookies.get(ACCESS_COOKIE),
                                      ACCESS_SECONDS)
        if user is not None and policy.allows(conn, user, row, "open", stage):
            return "", 204
    # The UI at the base domain: the access cookie is set for it and its subdomains.
    ui = layout.https_url(config(), config().proxy.base_domain)
    login = f"{ui}login?next=/builds/{build_id}"
    return "", 302, {"Location": login, "Cache-Control": "no-store"}


@blueprint.route("/wake/<int:build_id>", methods=["GET", "HEAD", "POST"])
@guard.self_authenticated
def wake(build_id: int):
    """A visit to a sleeping build: its server is started and the visit waits for it
    (up to HOLD_SECONDS), then is sent to the same address again (307: the method and
    body too), which Caddy now routes to the build. Caddy lets a request it is proxying
    finish when it loads the new routes. A visit that cannot be held (too many already
    are, or the build takes longer, or its start failed) gets a page that reloads itself
    (503 with Retry-After, for other clients) until the build answers."""
    svc = services()
    try:
        sleep.wake(svc, build_id)
    except NotFound:
        abort(404)
    again = _same_site_path(request.headers.get(ORIGINAL_URI, "/"))
    if _held.acquire(blocking=False):
        try:
            awake = sleep.wait_awake(svc, build_id, HOLD_SECONDS)
        finally:
            _held.release()
        if awake:
            return "", 307, {"Location": again, "Cache-Control": "no-store"}
    return render_template("proxy_waking.html", again=again), 503, {
        "Retry-After": "1", "Cache-Control": "no-store"}


def _same_site_path(uri: str) -> str:
    """The visit's own path, never another site ("//evil" or a scheme)."""
    if not uri.startswith("/") or uri.startswith("//") or "\\" in uri:
        return "/"
    return uri
