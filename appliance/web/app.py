"""The web application: blueprints, sessions, security headers, error pages."""

from __future__ import annotations

import datetime as dt
import logging

from flask import (Flask, current_app, flash, jsonify, make_response, redirect,
                   render_template, request, session)
from werkzeug.exceptions import HTTPException

from appliance.config import Config
from appliance.errors import NotFound, PermissionDenied, UserError
from appliance.store.db import Database
from appliance.web import (account, api, auth, backups, branches, builds, collaborators, common,
                           domains, mails, projects, proxy, uploads)
from appliance.web import admin, admin_users, archived, audit, audit_hook
from appliance.web.editor import blueprint as editor_blueprint
from appliance.web.git_http import blueprint as git_blueprint
from appliance.web.keys import blueprint as keys_blueprint
from appliance.web.shell import blueprint as shell_blueprint

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # No inline scripts anywhere: JavaScript lives in static files.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
}
# How long a sign-in lasts without signing in again (signing out ends it on the server).
SESSION_LIFETIME = dt.timedelta(days=14)
# Sent when the public address is https: browsers then refuse plain HTTP to it for a year,
# so a network attacker cannot strip TLS on a later visit. Not for subdomains: builds
# may be served at <build>.<domain> by other means.
HSTS = "max-age=31536000"


def create_app(config: Config, db: Database) -> Flask:
    app = Flask(__name__)
    https = config.server.public_url.lower().startswith("https://")
    app.config.update(
        SECRET_KEY=config.server.secret_key,
        SESSION_COOKIE_NAME="appliance_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.extensions[common.EXTENSION] = {"config": config, "db": db}
    auth.install(app)
    archived.install(app)  # after the guard: it reads the project the guard found
    audit_hook.install(app)
    common.install_template_helpers(app)
    for blueprint in (auth.blueprint, projects.blueprint, branches.blueprint, builds.blueprint,
                      account.blueprint,
                      mails.blueprint, backups.blueprint, uploads.blueprint, api.blueprint,
                      proxy.blueprint, domains.blueprint, collaborators.blueprint,
                      editor_blueprint, admin.blueprint, admin_users.blueprint,
                      audit.blueprint, git_blueprint):
        app.register_blueprint(blueprint)
    app.register_blueprint(keys_blueprint)  # the signed-in user's SSH keys
    app.register_blueprint(shell_blueprint)  # a build's Shell tab (the terminal's page)
    app.after_request(add_headers)
    if https:
        app.after_request(add_hsts)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(NotFound, lambda exc: error_page(404, str(exc)))
    app.register_error_handler(PermissionDenied, lambda exc: error_page(403, str(exc)))
    app.register_error_handler(UserError, refused)
    return app


def add_headers(response):
    # setdefault: a route that sets its own (a caught mail's sandboxed HTML) keeps them.
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # The same URL answers a fragment to htmx and a page otherwise: caches must tell apart.
    response.vary.add("HX-Request")
    return response


def add_hsts(response):
    response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def http_error(exc: HTTPException):
    if exc.code is None or exc.code < 400 or request.blueprint in auth.SELF_AUTHENTICATED_BLUEPRINTS:
        return exc
    response = make_response(error_page(exc.code, exc.description or exc.name, exc.name))
    for name, value in exc.get_headers():  # Allow, WWW-Authenticate, ...
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def refused(exc: UserError):
    """The one policy for a refused request. A POST of a page's form (its view declares
    where with common.refusals_back_to) goes back to that page with the reason as an error
    flash (303); anything else, the API included, gets the reason with a 400."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    declared = getattr(view, "refusals_back_to", None)
    if request.method != "POST" or declared is None:
        return error_page(400, str(exc))
    back, keep_form = declared
    log.info("refused %s %s: %s", request.method, auth.loggable_path(), exc)
    audit_hook.note_reason(str(exc))
    if keep_form:
        session[common.REFUSED_FORM] = {
            key: value for key, value in request.form.items()
            if key != auth.CSRF_FIELD and "password" not in key}
    flash(str(exc), "error")
    return redirect(back(**(request.view_args or {})), code=303)


def error_page(code: int, message: str, title: str | None = None):
    """An error as JSON for the API and the git client, as a page for people."""
    audit_hook.note_reason(message)
    if code == 404:
        # Never echo what was asked for: "no project 'x'" and "not visible to you" look alike.
        message = "Nothing here, or nothing you may see."
    if request.path.startswith(("/api/", "/-/")):
        return jsonify(error=message), code
    return render_template("error.html", code=code, title=title or "Error",
                           message=message), code
