"""Signing in and out, the login wall in front of every page, and CSRF protection.

The session (a signed cookie) holds the user's id, the user's session generation and a
random CSRF token. The generation is compared with the account's on every request:
signing out, changing the password or being disabled moves it on, and every older cookie
is then signed out, wherever it was copied to. Failed sign-ins are throttled per account
and per client address (appliance.store.logins). A user with two-factor sign-in gives a
code from their app as a second step (throttled the same way; see appliance.store.totp);
with [accounts] require_totp_for_admins, an appliance admin without it is sent to its
set-up page whatever they ask for. Every form that POSTs carries the CSRF token in a
hidden `csrf_token` field; htmx sends it as the X-CSRF-Token header (set with hx-headers
on <body>). The git blueprint is exempt: git clients authenticate each request with a
token, not with the cookie. So is a request to /api/... with `Authorization: Bearer
<token>` (a token with the api scope): the cookie is then not read at all. A token never
opens the HTML pages.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import time
import unicodedata
from typing import NamedTuple
from urllib.parse import urlsplit

from flask import (Blueprint, abort, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)

from appliance.errors import PermissionDenied, UserError
from appliance.store import audit, logins
from appliance.store import totp
from appliance.store import users as store_users
from appliance.web import guard
from appliance.web import build_access
from appliance.web.common import config, current_user, db, format_time, is_htmx

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

# Reachable without signing in: the login pages, the page a password link opens, assets
# and the health check.
PUBLIC_ENDPOINTS = {"auth.login", "auth.login_code", "account.password_link", "static",
                    "api.health"}
# All an appliance admin who must set up two-factor sign-in may reach until they have.
TOTP_SETUP_ENDPOINTS = {"account.totp", "account.totp_begin", "account.totp_confirm",
                        "auth.logout", "static"}
# The code of the second step must follow the password within this long.
CODE_STEP_SECONDS = 300
BEARER = "Bearer "
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


def load_token_user():
    """The user of an API request's Bearer token (api scope); an answer if refused."""
    g.user = None
    token = request.headers.get("Authorization", "")[len(BEARER):].strip()
    try:
        with db().transaction() as conn:
            user = store_users.user_by_token(conn, None, token, "api")
    except PermissionDenied as exc:
        return jsonify(error=str(exc)), 403
    if user is None:
        return (jsonify(error="the token is unknown, expired or revoked"), 401,
                {"WWW-Authenticate": 'Bearer realm="appliance"'})
    g.user, g.token_auth = user, True
    return None


def require_login():
    if request.blueprint in SELF_AUTHENTICATED_BLUEPRINTS or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.endpoint is None:  # no such route: let it be a 404
        return None
    if request.path.startswith("/api/") and \
            request.headers.get("Authorization", "").startswith(BEARER):
        refused = load_token_user()
        if refused is not None:
            return refused
    else:
        load_user()
    if g.user is not None:
        return totp_setup_wall()
    if request.path.startswith("/api/"):
        return jsonify(error="sign in first"), 401
    login = url_for("auth.login", next=request.full_path.rstrip("?"))
    if is_htmx():  # a full page swapped into a fragment would be wrong: make htmx navigate
        return "", 401, {"HX-Redirect": login}
    return redirect(login)


def totp_setup_wall():
    """With [accounts] require_totp_for_admins, an appliance admin without two-factor
    sign-in reaches its set-up page only."""
    user = g.user
    if not user["is_admin"] or not config().accounts.require_totp_for_admins \
            or request.endpoint in TOTP_SETUP_ENDPOINTS:
        return None
    with db().transaction() as conn:
        if totp.is_enabled(conn, user["id"]):
            return None
    message = "Appliance admins must set up two-factor sign-in before anything else."
    if request.path.startswith("/api/"):
        return jsonify(error=message), 403
    target = url_for("account.totp")
    if is_htmx():
        return "", 401, {"HX-Redirect": target}
    return redirect(target)  # the set-up page says why


def check_csrf():
    if request.method not in UNSAFE_METHODS or request.blueprint in SELF_AUTHENTICATED_BLUEPRINTS:
        return None
    if g.get("token_auth"):  # no cookie was read: nothing a forged form could borrow
        return None
    expected = session.get("csrf")
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        log.info("refused %s %s: CSRF token missing or wrong", request.method,
                 loggable_path())
        abort(400, description="CSRF token missing or wrong")
    return None


def loggable_path() -> str:
    """The request's path for the log, without the secrets a URL may carry (a password
    link's token): a part of the URL named like a secret (store.audit.DENIED_WORDS)
    shows as "…"."""
    path = request.path
    for name, value in (request.view_args or {}).items():
        if any(word in name.lower() for word in audit.DENIED_WORDS) and str(value):
            path = path.replace(str(value), "…")
    return path


def keep_build_access(response):
    """A signed-in user's browser keeps its access cookie for private builds."""
    if request.blueprint not in SELF_AUTHENTICATED_BLUEPRINTS and not g.get("token_auth"):
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


class SignIn(NamedTuple):
    user: dict | None          # the password was right (disabled users included)
    lock: logins.Lock | None   # the account or the address is locked: nothing was checked
    needs_code: bool = False   # the user has two-factor sign-in: a code must follow


def check_sign_in(name: str, password: str, address: str) -> SignIn:
    """The first step of signing in. A right password counts as a success (the
    account's failures are forgotten) only when it is all the user needs: with a second
    step, only the code does, so a known password cannot reset the count of code guesses."""
    with db().transaction() as conn:
        attempt = logins.Attempt(conn, name, address)
        lock = attempt.lock
        if lock is not None:
            log.warning("sign-in for %r from %s throttled: %s %s locked until %s",
                        name, address, lock.scope, lock.key, format_time(lock.until))
            return SignIn(None, lock)
        user = store_users.authenticate(conn, name, password)
        if user is not None:
            needs_code = totp.is_enabled(conn, user["id"])
            if store_users.is_active(user) and not needs_code:
                attempt.succeeded()
            return SignIn(user, None, needs_code)
        log.info("failed sign-in for %r from %s", name, address)
        _count_failure(attempt, name)
        return SignIn(None, None)


def _count_failure(attempt: logins.Attempt, name: str) -> None:
    for started in attempt.failed():
        log.warning("%s %s locked for %d s after too many failed sign-ins (last for %r)",
                    started.scope, started.key, started.seconds, name)


def throttle_message(lock: logins.Lock) -> str:
    minutes = -(-lock.seconds // 60)
    wait = f"{lock.seconds} seconds" if lock.seconds < 60 else \
        f"{minutes} minute{'s' if minutes > 1 else ''}"
    return (f"Too many failed sign-ins for {lock.subject}. Please try again in {wait} "
            f"(after {format_time(lock.until)}).")


def throttled_page(lock: logins.Lock, template: str = "login.html"):
    page = render_template(template, error=throttle_message(lock),
                           next=safe_next(request.form.get("next")))
    return page, 429, {"Retry-After": str(lock.seconds)}


def throttled_check(name: str, check, wrong: str) -> None:
    """Ask `check(conn)` (a password or a code of the signed-in user `name`) under the
    sign-in throttle of the account and the address: UserError with `wrong` when it
    says no (the failure counted), or with the throttle's message when locked (then
    nothing is checked)."""
    address = client_address()
    with db().transaction() as conn:
        attempt = logins.Attempt(conn, name, address)
        lock = attempt.lock
        right = lock is None and check(conn)
        if right:
            attempt.succeeded()
        elif lock is None:
            log.info("wrong password or code of %s from %s", name, address)
            _count_failure(attempt, name)
    if lock is not None:
        raise UserError(throttle_message(lock))
    if not right:
        raise UserError(wrong)


def sign_in(user: dict, address: str, target: str | None):
    """A fresh session (and CSRF token) for the user, and their access cookie."""
    session.clear()
    session.permanent = True
    session["user_id"] = user["id"]
    session["generation"] = user["session_generation"]
    log.info("user %s signed in from %s", user["name"], address)
    response = redirect(safe_next(target))
    build_access.issue(config(), response, user, ACCESS_SECONDS)
    return response


@blueprint.route("/login", methods=["GET", "POST"])
@guard.public
def login():
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        address = client_address()
        user, lock, needs_code = check_sign_in(name, request.form.get("password", ""), address)
        if lock is not None:
            return throttled_page(lock)
        if user is not None and not store_users.is_active(user):
            log.info("disabled user %s refused sign-in from %s", user["name"], address)
            error = "This account is disabled: ask an administrator."
        elif user is not None and needs_code:
            session.clear()
            session["pending"] = {"user_id": user["id"], "generation": user["session_generation"],
                                  "until": time.time() + CODE_STEP_SECONDS,
                                  "next": safe_next(request.form.get("next"))}
            return redirect(url_for("auth.login_code"))
        elif user is not None:
            return sign_in(user, address, request.form.get("next"))
        else:
            error = "Wrong name or password."
    return render_template("login.html", error=error,
                           next=safe_next(request.values.get("next")))


def pending_user() -> dict | None:
    """Whose password was right a moment ago, while their code is awaited."""
    pending = session.get("pending")
    if not isinstance(pending, dict) or not isinstance(pending.get("until"), (int, float)) \
            or pending["until"] < time.time():
        return None
    with db().transaction() as conn:
        return store_users.session_user(conn, pending.get("user_id"), pending.get("generation"))


@blueprint.route("/login/code", methods=["GET", "POST"])
@guard.public
def login_code():
    """The second step: a code from the user's authenticator app."""
    user = pending_user()
    if user is None:
        session.pop("pending", None)
        flash("Sign in again: the code must follow the password within "
              f"{CODE_STEP_SECONDS // 60} minutes.", "error")
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("login_code.html", error=None)
    address = client_address()
    with db().transaction() as conn:
        attempt = logins.Attempt(conn, user["name"], address)
        lock = attempt.lock
        if lock is not None:
            return throttled_page(lock, "login_code.html")
        right = totp.verify(conn, user["id"], request.form.get("code", ""))
        if right:
            attempt.succeeded()
        else:
            log.info("wrong or reused sign-in code for %s from %s", user["name"], address)
            _count_failure(attempt, user["name"])
    if right:
        return sign_in(user, address, session["pending"]["next"])
    return render_template("login_code.html",
                           error="Wrong code, or one already used: wait for the next."), 200


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
