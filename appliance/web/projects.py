"""The projects list, a project's page (stages, branches and their builds) and its
settings (outgoing mail relay, caught-mail retention)."""

from __future__ import annotations

import hashlib
import logging

from flask import (Blueprint, flash, make_response, redirect, render_template, request,
                   url_for)

from appliance import policy
from appliance.errors import UserError
from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web import guard
from appliance.web.auth import csrf_token
from appliance.web.common import (config, current_user, db, is_htmx, refused_form,
                                  refusals_back_to, render, visible_project)

log = logging.getLogger(__name__)

blueprint = Blueprint("projects", __name__)

STAGES = (("production", "Production"), ("staging", "Staging"), ("development", "Development"))
# Cells shown per branch row: about a screen's width, like Odoo.sh's builds row.
BUILDS_PER_BRANCH = 12
# Development branches listed, most recently built first; the rest behind "Show all"
# (?branches=all). An agency's project has a hundred, most of them idle.
DEVELOPMENT_SHOWN = 20
# The list polls every BUSY_POLL_SECONDS while a build is queued or in progress, so its
# cells change colour live, and every IDLE_POLL_SECONDS otherwise, so a push from a
# terminal appears without a reload; an unchanged poll is a 204 of a few ms.
BUSY_POLL_SECONDS = 2
IDLE_POLL_SECONDS = 5


@blueprint.get("/")
@guard.signed_in
def index():
    with db().transaction() as conn:
        projects = store_projects.list_projects(conn, current_user())
        summaries = overview.project_summaries(conn, [p["id"] for p in projects])
    return render_template("projects.html", projects=projects, summaries=summaries)


@blueprint.get("/projects/<name>")
@guard.project("view")
def project(name: str):
    show_all = request.args.get("branches") == "all"
    with db().transaction() as conn:
        project = visible_project(conn, name)
        # Read first: a change made while the list is read shows at the next poll.
        version, busy = overview.branches_version(conn, project["id"], BUILDS_PER_BRANCH)
        etag = list_etag(project, version, busy, show_all)
        if is_htmx() and request.if_none_match.contains(etag):
            return "", 204  # htmx swaps nothing
        visible = policy.visible_stages(conn, current_user(), project)
        branches = [b for b in store_projects.list_branches(conn, project)
                    if b["stage"] in visible]
        stages, shown = staged(branches, show_all, visible)
        builds = overview.recent_builds_by_branch(conn, project["id"], BUILDS_PER_BRANCH,
                                                  [b["id"] for b in shown])
    remote = f"{config().server.public_url.rstrip('/')}/git/{project['name']}.git"
    counts = {key: sum(1 for b in branches if b["stage"] == key) for key, _ in STAGES}
    list_url = url_for("projects.project", name=name, branches="all" if show_all else None)
    response = make_response(render(
        "project.html", "_branches.html", project=project, stages=stages, counts=counts,
        builds=builds, remote=remote, names=[b["name"] for b in branches], busy=busy,
        etag=f'"{etag}"', list_url=list_url,
        poll_seconds=BUSY_POLL_SECONDS if busy else IDLE_POLL_SECONDS))
    if is_htmx():
        response.set_etag(etag)
        response.headers["Cache-Control"] = "no-cache"
    return response


def staged(branches: list[dict], show_all: bool,
           visible=policy.STAGES) -> tuple[list[tuple], list[dict]]:
    """(stage, label, branches shown) per stage the viewer may see, and all the branches
    shown: every production and staging branch, the development ones most recently built
    first, at most DEVELOPMENT_SHOWN of them unless all are asked for."""
    stages = []
    for key, label in STAGES:
        if key not in visible:
            continue
        rows = [b for b in branches if b["stage"] == key]
        if key == "development" and not show_all:
            rows = rows[:DEVELOPMENT_SHOWN]
        stages.append((key, label, rows))
    return stages, [b for _, _, rows in stages for b in rows]


def list_etag(project: dict, version: str, busy: bool, show_all: bool) -> str:
    """What the branches fragment depends on, hashed: the branches and builds it shows,
    the project's own fields, the viewer's session (its forms carry the CSRF token)."""
    user = current_user()
    parts = (version, busy, show_all, project["name"], project["production_branch"],
             user["id"], csrf_token())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


# The project's settings: outgoing mail relay, caught-mail retention, public access

# Columns never sent to a template (the page shows only whether a password is set).
SECRET_COLUMNS = ("relay_password", "db_password")
SECURITY_LABELS = (("starttls", "STARTTLS"), ("none", "None (plain SMTP)"))


def render_settings(project: dict, editable: bool):
    """The settings form, showing what a refused save had typed (never a password)."""
    shown = {k: v for k, v in project.items() if k not in SECRET_COLUMNS}
    typed = {k: v for k, v in refused_form().items() if k in shown}
    return render_template("project_settings.html", project=shown, editable=editable,
                           password_set=bool(project["relay_password"]),
                           values={**shown, **typed}, securities=SECURITY_LABELS)


def settings_page(name: str) -> str:
    return url_for("projects.settings", name=name)


def _whole_number(form, name: str, label: str) -> int:
    value = form.get(name, "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise UserError(f"{label} must be a whole number")
    return int(value)


def mail_settings_from(form) -> dict:
    """The fields set_mail_settings takes, read from the form; the password only when one
    was typed (empty keeps the stored one) or when asked to clear it."""
    fields = {
        "relay_host": form.get("relay_host", "").strip(),
        "relay_port": _whole_number(form, "relay_port", "relay port"),
        "relay_security": form.get("relay_security", ""),
        "relay_user": form.get("relay_user", "").strip(),
        "mail_keep_days": _whole_number(form, "mail_keep_days", "days to keep caught mail"),
        "mail_keep_count": _whole_number(form, "mail_keep_count",
                                         "number of caught messages to keep"),
    }
    if form.get("clear_password"):
        fields["relay_password"] = ""
    elif form.get("relay_password"):
        fields["relay_password"] = form["relay_password"]
    return fields


@blueprint.get("/projects/<name>/settings")
@guard.project("view")
def settings(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        editable = policy.allows(conn, current_user(), project, "settings")
    return render_settings(project, editable)


@blueprint.post("/projects/<name>/settings")
@guard.project("settings")
@refusals_back_to(settings_page, keep_form=True)
def save_settings(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        fields = mail_settings_from(request.form)
        store_projects.set_mail_settings(conn, project, **fields)
        public = request.form.get("public_access") == "1"
        if public != project["public_access"]:
            store_projects.set_public_access(conn, project, public)
            log.info("%s made the development builds of %s %s", current_user()["name"], name,
                     "public" if public else "private to its members")
    log.info("%s changed the mail settings of %s (relay %s:%s, %s, password %s)",
             current_user()["name"], name, fields["relay_host"] or "none", fields["relay_port"],
             fields["relay_security"], "changed" if "relay_password" in fields else "kept")
    flash("Settings saved. Production picks relay changes up at its next deploy or restart.")
    return redirect(settings_page(name), code=303)
