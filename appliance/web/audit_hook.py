"""The web's part of the audit trail: one after-request hook writes a row for every
request that may change something (POST, PUT, PATCH, DELETE), whatever its outcome, and
for every refused look (a 403, or an admin page answered 404 to someone else).

A row says who (the signed-in user; for a sign-in, the account signed in or tried), from
which address (auth.client_address), what (the endpoint: `branches.merge`), where (the
project, branch and build the URL names, or the view says with `note`), the status and
the outcome with the reason of a refusal (`note_reason`, called by the app's error
handlers), and the request's safe fields (store.audit.clean: never a password, token,
code or file). Views that make something new say what with `note(project=...)`.
"""

from __future__ import annotations

import logging

from flask import g, request, session

from appliance.errors import UserError
from appliance.store import audit
from appliance.store import users as store_users
from appliance.web import guard
from appliance.web.auth import UNSAFE_METHODS, client_address
from appliance.web.common import current_user, db

log = logging.getLogger(__name__)

# Blueprints whose requests are recorded elsewhere or change nothing of a user's: git
# over HTTP (a push is recorded by jobs/push.py with its branches; a fetch changes
# nothing) and the proxy's questions (Caddy asks them about visits to builds).
QUIET_BLUEPRINTS = {"git": "pushes are recorded by jobs/push.py",
                    "proxy": "Caddy's questions about visits to builds"}
# Endpoints recorded only when refused: each piece of an upload (its start and its
# import are recorded, and a 20 GB dump comes in thousands of pieces).
QUIET_ENDPOINTS = {"uploads.chunks": "one row per piece would bury the rest"}
LOGIN = "auth.login"


def note(**fields) -> None:
    """What the view did, for its row: project (a row), branch, build_id, details."""
    g.setdefault("audit_note", {}).update(fields)


def note_reason(reason: str) -> None:
    """Why the request was refused (the error handlers call this)."""
    g.audit_reason = reason


def wanted(response) -> bool:
    if request.endpoint is None or request.blueprint in QUIET_BLUEPRINTS:
        return False
    status = response.status_code
    if request.method in UNSAFE_METHODS:
        return request.endpoint not in QUIET_ENDPOINTS or status >= 400
    if status == 403:
        return True
    rule = guard.rule_of(request.endpoint)
    user = current_user()
    return (status == 404 and rule is not None and rule.kind == "appliance_admin"
            and not (user and user["is_admin"]))


def outcome(status: int, reason: str | None) -> str:
    if status >= 500:
        return "error"
    if status == 404:
        return "not_found"
    if status in (401, 403):
        return "denied"
    if status >= 400 or reason is not None:
        return "refused"
    if request.endpoint == LOGIN and status == 200:  # the form again: not signed in
        return "refused"
    return "ok"


def record(response):
    """The after-request hook: never changes the response, never fails it."""
    try:
        if wanted(response):
            _write(response)
    except Exception:  # the action is done: a trail that cannot be written is logged
        log.exception("could not write the audit row of %s %s", request.method,
                      request.endpoint)
    return response


def _write(response) -> None:
    status = response.status_code
    reason = g.get("audit_reason")
    noted = g.get("audit_note", {})
    args = request.view_args or {}
    fields = request.get_json(silent=True) if request.is_json else request.form
    details = {**audit.clean(fields if hasattr(fields, "items") else {}),
               **audit.clean(args), **noted.get("details", {})}
    if request.method != "POST":
        details["method"] = request.method
    with db().transaction() as conn:
        user, user_name = _who(conn, status)
        if request.endpoint == LOGIN:
            details = {}
            if reason is None and status == 200:
                reason = "wrong name or password"
        project = noted.get("project") or _project(conn, args)
        audit.record(conn, source="web", action=request.endpoint,
                     outcome=outcome(status, reason), user=user, user_name=user_name,
                     address=client_address(), project=project,
                     branch=noted.get("branch") or args.get("branch") or details.get("branch", ""),
                     build_id=noted.get("build_id") or args.get("build_id"), status=status,
                     reason=reason or "", details=details)


def _who(conn, status: int) -> tuple[dict | None, str | None]:
    """The user, and the name to write. A sign-in (a redirect) is the account it opened;
    a failed one names the account tried only if it exists (never what was typed: a
    password typed into the name field would be kept)."""
    if request.endpoint != LOGIN:
        return current_user(), None
    if 300 <= status < 400 and isinstance(session.get("user_id"), int):
        user = store_users.get_user(conn, session["user_id"])
        if user is not None:
            return user, None
    name = request.form.get("name", "").strip()
    if store_users.USER_NAME.match(name) and conn.execute(
            "SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
        return None, name
    return None, ""


def _project(conn, args: dict) -> dict | None:
    """The project the URL names (the guard's target), whatever the outcome."""
    target = g.get("policy_target")
    if target:
        return target[0]
    if request.blueprint == "auth":
        return None
    try:
        return guard.target(conn, args)[0]
    except UserError:  # names no project, or one that does not exist
        return None


def install(app) -> None:
    app.after_request(record)
