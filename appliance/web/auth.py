"""Signing in and out, the login wall in front of every page, and CSRF protection.

The session (a signed cookie) holds the user's id, the user's session generation and a
random CSRF token. The generation is compared with the account's on every request:
signing out or changing the password moves it on, and every older cookie is then signed
out, wherever it was copied to. Failed sign-ins are throttled per account and per client
address (appliance.store.logins). Every form that POSTs carries the CSRF token in a
hidden `csrf_token` field; htmx sends it as the X-CSRF-Token header (set with hx-headers
on <body>). The git blueprint is exempt: git clients authenticate each request with a
token, not with the cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import unicodedata
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, session, url_for

from appliance.store import logins
from appliance.store import users as store_users
from appliance.web import guard
from appliance.web import build_access
from appliance.web.common import config, current_user, db, format_time, is_htmx

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

# Reachable without signing in: the login page itself, assets and the health check.
PUBLIC_ENDPOINTS = {"auth.login", "static", "api.health"}
# Blueprints that authenticate each request themselves (git over HTTPS: basic auth), or
# answer only the proxy (its questions and pages, unreachable from outside through it).
SELF_AUTHENTICATED_BLUEPRINTS = {"git", "proxy"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The access cookie for private builds lasts as long as a sign-in (app.SESSION_LIFETIME).
ACCESS_SECONDS = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# A `next` longer than this is no page of ours.
MAX_NEXT = 2048
# Percent-encoded control characters and backslashes: harmless as bytes of a path, but
# some browsers and proxies decode them before reading where the path ends.
ENCODED_HOSTILE = re.compile(r"%(?:[01][0-9a-f]|7f|5c)", re.IGNORECASE)
# IPv6 clients are throttled per /64: one machine usually owns a whole one.
IPV6_PREFIX = 64


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def load_user() -> None:
    g.user = None
    if "user_id" not in session:
        return
    with db().transaction() as conn:
        g.user = store_users.session_user(conn, session.get("user_id"), session.get("generation"))
    if g.user is None:  # deleted, signed out or a new password since: the cookie is void
        session.clear()


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


def keep_build_access(response):
    """A signed-in user's browser keeps its access cookie for private builds."""
    if request.blueprint not in SELF_AUTHENTICATED_BLUEPRINTS:
        build_access.refresh(config(), request, response, g.get("user"), ACCESS_SECONDS)
    return response


def install(app) -> None:
    # In this order: who you are, whether you may, then whether this form is yours.
    app.before_request(require_login)
    app.before_request(guard.enforce)
    app.before_request(check_csrf)
    app.after_request(keep_build_access)
    app.jinja_env.globals["csrf_token"] = csrf_token


def is_local_path(target: str) -> bool:
    """True for a path of this site: one leading '/', no scheme or host, nothing a
    browser would strip or turn into a slash (control characters, backslashes), raw or
    percent-encoded."""
    if not target or len(target) > MAX_NEXT or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or ENCODED_HOSTILE.search(target):
        return False
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
           for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, else the projects page."""
    return target if target and is_local_path(target) else url_for("projects.index")


def client_address() -> str:
    """Who is asking, for the throttle. A proxy on this host (the TLS front) is trusted
    for the last address of X-Forwarded-For, the one it added itself; anyone else's
    header is ignored. IPv6 addresses count by their /64."""
    peer = request.remote_addr or ""
    candidate = peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and _is_loopback(peer):
        candidate = forwarded.rsplit(",", 1)[-1].strip()
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return peer or "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, IPV6_PREFIX), strict=False))
    return str(address)


def _is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def check_sign_in(name: str, password: str, address: str) -> tuple[dict | None, logins.Lock | None]:
    """(the user, None) on success, (None, None) on a wrong password, (None, the lock)
    when the account or the address is locked: then the password is not even checked."""
    with db().transaction() as conn:
        attempt = logins.Attempt(conn, name, address)
        lock = attempt.lock
        if lock is not None:
            log.warning("sign-in for %r from %s throttled: %s %s locked until %s",
                        name, address, lock.scope, lock.key, format_time(lock.until))
            return None, lock
        user = store_users.authenticate(conn, name, password)
        if user is not None:
            attempt.succeeded()
            return user, None
        log.info("failed sign-in for %r from %s", name, address)
        for started in attempt.failed():
            log.warning("%s %s locked for %d s after too many failed sign-ins (last for %r)",
                        started.scope, started.key, started.seconds, name)
        return None, None


def throttled_page(lock: logins.Lock):
    minutes = -(-lock.seconds // 60)
    wait = f"{lock.seconds} seconds" if lock.seconds < 60 else \
        f"{minutes} minute{'s' if minutes > 1 else ''}"
    error = (f"Too many failed sign-ins for {lock.subject}. Please try again in {wait} "
             f"(after {format_time(lock.until)}).")
    page = render_template("login.html", error=error, next=safe_next(request.form.get("next")))
    return page, 429, {"Retry-After": str(lock.seconds)}


@blueprint.route("/login", methods=["GET", "POST"])
@guard.public
def login():
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        address = client_address()
        user, lock = check_sign_in(name, request.form.get("password", ""), address)
        if lock is not None:
            return throttled_page(lock)
        if user is not None:
            session.clear()  # a fresh session (and CSRF token) for the signed-in user
            session.permanent = True
            session["user_id"] = user["id"]
            session["generation"] = user["session_generation"]
            log.info("user %s signed in from %s", user["name"], address)
            response = redirect(safe_next(request.form.get("next")))
            build_access.issue(config(), response, user, ACCESS_SECONDS)
            return response
        error = "Wrong name or password."
    return render_template("login.html", error=error,
                           next=safe_next(request.values.get("next")))


@blueprint.post("/logout")
@guard.signed_in
def logout():
    """Sign out: this cookie, and every other one of the account, stops working."""
    user = current_user()
    with db().transaction() as conn:
        store_users.end_sessions(conn, user["id"])
    log.info("user %s signed out from %s", user["name"], client_address())
    session.clear()
    response = redirect(url_for("auth.login"))
    build_access.clear(config(), response)
    return response
