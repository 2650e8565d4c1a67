"""Signing in and out, the login wall in front of every page, and CSRF protection.

The session (a signed cookie) holds the user's id and a random CSRF token. Every form
that POSTs carries the token in a hidden `csrf_token` field; htmx sends it as the
X-CSRF-Token header (set with hx-headers on <body>). The git blueprint is exempt: git
clients authenticate each request with a token, not with the cookie.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, session, url_for

from appliance.store import users as store_users
from appliance.web.common import db, is_htmx

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

# Reachable without signing in: the login page itself, assets and the health check.
PUBLIC_ENDPOINTS = {"auth.login", "static", "api.health"}
# Blueprints that authenticate each request themselves (git over HTTPS: basic auth).
SELF_AUTHENTICATED_BLUEPRINTS = {"git"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def load_user() -> None:
    g.user = None
    user_id = session.get("user_id")
    if user_id is None:
        return
    with db().transaction() as conn:
        g.user = store_users.get_user(conn, user_id)
    if g.user is None:  # the account was deleted: the cookie means nothing any more
        session.pop("user_id", None)


def require_login():
    if request.blueprint in SELF_AUTHENTICATED_BLUEPRINTS or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.endpoint is None:  # no such route: let it be a 404
        return None
    load_user()
    if g.user is not None:
        return None
    if request.path.startswith("/api/"):
        return jsonify(error="sign in first"), 401
    login = url_for("auth.login", next=request.full_path.rstrip("?"))
    if is_htmx():  # a full page swapped into a fragment would be wrong: make htmx navigate
        return "", 401, {"HX-Redirect": login}
    return redirect(login)


def check_csrf():
    if request.method not in UNSAFE_METHODS or request.blueprint in SELF_AUTHENTICATED_BLUEPRINTS:
        return None
    expected = session.get("csrf")
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        log.info("refused %s %s: CSRF token missing or wrong", request.method, request.path)
        abort(400, description="CSRF token missing or wrong")
    return None


def install(app) -> None:
    app.before_request(check_csrf)
    app.before_request(require_login)
    app.jinja_env.globals["csrf_token"] = csrf_token


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("projects.index")
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")
        with db().transaction() as conn:
            user = store_users.authenticate(conn, name, password)
        if user is not None:
            session.clear()  # a fresh session (and CSRF token) for the signed-in user
            session.permanent = True
            session["user_id"] = user["id"]
            log.info("user %s signed in from %s", user["name"], request.remote_addr)
            return redirect(safe_next(request.form.get("next")))
        log.info("failed sign-in for %r from %s", name, request.remote_addr)
        error = "Wrong name or password."
    return render_template("login.html", error=error,
                           next=safe_next(request.values.get("next")))


@blueprint.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
