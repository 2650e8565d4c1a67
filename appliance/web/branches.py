"""A branch's page (history, builds, settings) and what people do to branches: move them
between stages, merge them, rebuild them.

Branch names may contain '/': the page is the only GET under a branch, and every action
is a POST whose URL ends in a fixed word, so the two never read the same URL. Refusals
(a second production branch, a conflicting merge, a build already queued) are UserErrors:
the app's one policy brings them back as error flashes on the page the form was on
(common.refusals_back_to).
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, request, url_for

from appliance import policy
from appliance import layout
from appliance.errors import NotFound, UserError
from appliance.jobs import stages
from appliance.store import builds as store_builds
from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web import guard
from appliance.web import mails
from appliance.web.common import (config, current_user, db, refusals_back_to, render, services,
                                  visible_branch)

log = logging.getLogger(__name__)

blueprint = Blueprint("branches", __name__)

TABS = (("history", "History"), ("mails", "Mails"), ("settings", "Settings"))
# Build cells on the branch page: more than the project page's row, still one screen.
BUILDS_SHOWN = 30
EVENT_LABELS = {
    "commit": "Commit", "branch_created": "Branch created", "stage_changed": "Stage changed",
    "merge": "Merge", "rebuild": "Rebuild", "refresh": "Refresh from production",
    "build_restarted": "Build restarted", "server_stopped": "Server stopped",
    "deploy": "Deploy", "update_plan": "Update plan", "rollback": "Rollback",
    "gc": "Database collected", "mail_released": "Mail released",
    "shell": "Shell", "shell_command": "Shell command",
}
# What a push to a staging branch does; production always deploys the pushed revision,
# development always makes a new build with tests.
PUSH_BEHAVIOURS = {
    "staging": (("new", "New build: a fresh copy of production"),
                ("update", "Update the previous build"),
                ("nothing", "Do nothing")),
}


def event_label(kind: str) -> str:
    return EVENT_LABELS.get(kind) or kind.replace("_", " ").capitalize()


def project_page(name: str, **_branch) -> str:
    """Where the project page's forms (moves, merges) come back to."""
    return url_for("projects.project", name=name)


def branch_page(name: str, branch: str) -> str:
    return url_for("branches.branch", name=name, branch=branch)


def settings_tab(name: str, branch: str) -> str:
    return url_for("branches.branch", name=name, branch=branch, tab="settings")


@blueprint.get("/projects/<name>/branches/<path:branch>")
@guard.project("view")
def branch(name: str, branch: str):
    tab = request.args.get("tab", "history")
    if tab not in dict(TABS):
        abort(404)
    if tab == "mails":
        return mails.branch_tab(name, branch, TABS)
    with db().transaction() as conn:
        project, row = visible_branch(conn, name, branch)
        builds = store_builds.builds_of_branch(conn, row["id"], BUILDS_SHOWN)
        busy = store_builds.branch_busy(conn, row["id"])
        events = overview.branch_history(conn, row["id"]) if tab == "history" else []
    running = next((b for b in builds if layout.build_url(config(), b)), None)
    return render("branch.html", "_branch_status.html", project=project, branch=row, tab=tab,
                  tabs=TABS, builds=builds, busy=busy, events=events, event_label=event_label,
                  url=layout.build_url(config(), running) if running else None,
                  behaviours=PUSH_BEHAVIOURS.get(row["stage"], ()))


@blueprint.post("/projects/<name>/branches/<path:branch>/stage")
@guard.project("stage_moves", policy.ANY_STAGE)
@refusals_back_to(project_page)
def move(name: str, branch: str):
    stage = request.form.get("stage", "")
    with db().transaction() as conn:
        project, row = visible_branch(conn, name, branch)
    if row["stage"] == stage:
        flash(f"{branch} is already in {stage}.")
    else:
        stages.move(services(), project, branch, stage, current_user())
        flash(f"Moved {branch} to {stage}.")
    return redirect(project_page(name), code=303)


@blueprint.post("/projects/<name>/branches/<path:branch>/merge")
@guard.project("stage_moves", policy.ANY_STAGE)
@refusals_back_to(project_page)
def merge(name: str, branch: str):
    target = request.form.get("target", "")
    with db().transaction() as conn:
        project, _row = visible_branch(conn, name, branch)
        if not target:
            raise UserError("choose the branch to merge into")
        try:  # typed into the form: a mistake to show, not a page that is not there
            store_projects.get_branch(conn, project, target)
        except NotFound as exc:
            raise UserError(str(exc)) from None
    result = stages.merge(services(), project, branch, target, current_user())
    log.info("%s merged %s/%s into %s (%s)", current_user()["name"], name, branch, target,
             result.kind)
    queued = f": build #{result.build['id']} queued" if result.build else ""
    flash(f"Merged {branch} into {target} ({result.kind}){queued}.")
    return redirect(project_page(name), code=303)


@blueprint.post("/projects/<name>/branches/<path:branch>/rebuild")
@guard.project("rebuild")
@refusals_back_to(branch_page)
def rebuild(name: str, branch: str):
    return _rebuild(name, branch, "rebuild")


@blueprint.post("/projects/<name>/branches/<path:branch>/refresh")
@guard.project("rebuild")
@refusals_back_to(branch_page)
def refresh(name: str, branch: str):
    return _rebuild(name, branch, "refresh")


def _rebuild(name: str, branch: str, trigger: str):
    with db().transaction() as conn:
        project, _row = visible_branch(conn, name, branch)
    build = stages.rebuild(services(), project, branch, current_user(), trigger=trigger)
    log.info("%s asked for a %s of %s/%s: build #%d", current_user()["name"], trigger, name,
             branch, build["id"])
    what = "Refresh from production" if trigger == "refresh" else "Rebuild"
    flash(f"{what}: build #{build['id']} queued.")
    return redirect(branch_page(name, branch), code=303)


@blueprint.post("/projects/<name>/branches/<path:branch>/settings")
@guard.project("settings")
@refusals_back_to(settings_tab)
def settings(name: str, branch: str):
    value = request.form.get("push_behaviour", "")
    with db().transaction() as conn:
        _project, row = visible_branch(conn, name, branch)
        allowed = dict(PUSH_BEHAVIOURS.get(row["stage"], ()))
        if not allowed:
            raise UserError(f"only a staging branch has a push behaviour; {branch} is in "
                            f"{row['stage']}")
        if value not in allowed:
            raise UserError(f"push behaviour must be one of {', '.join(allowed)}")
        store_projects.set_push_behaviour(conn, row, value)
    flash(f"Push behaviour of {branch}: {allowed[value]}.")
    return redirect(settings_tab(name, branch), code=303)
