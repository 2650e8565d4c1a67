"""What Caddy asks the daemon: whether a name may have a certificate, and the page a
stopped build's name answers.

Only Caddy reaches these: they live under /_proxy, which the UI's own route in Caddy
answers 404 from outside; the daemon itself listens on loopback. No session is read or
made here (the stopped page is served at a build's name, not the UI's).
"""

from __future__ import annotations

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
    """A visit to a sleeping build: its server is started and the visit gets a page
    that reloads itself (503 with Retry-After, for other clients) until the build
    answers. The visit is not held meanwhile: Caddy takes new routes as the build comes
    up, and a request held across that change would be cut."""
    try:
        sleep.wake(services(), build_id)
    except NotFound:
        abort(404)
    again = _same_site_path(request.headers.get(ORIGINAL_URI, "/"))
    return render_template("proxy_waking.html", again=again), 503, {
        "Retry-After": "1", "Cache-Control": "no-store"}


def _same_site_path(uri: str) -> str:
    """The visit's own path, never another site ("//evil" or a scheme)."""
    if not uri.startswith("/") or uri.startswith("//") or "\\" in uri:
        return "/"
    return uri
