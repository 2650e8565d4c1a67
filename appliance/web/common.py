"""What every view shares: the services, the signed-in user, permissions, rendering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import current_app, g, render_template, request, session

from appliance import layout, policy
from appliance.config import Config
from appliance.errors import NotFound
from appliance.services import Services
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.store.db import Database

EXTENSION = "appliance"
IN_PROGRESS_STATES = ("queued",) + store_builds.ACTIVE_STATES
# Why a build was made (builds.trigger) and what its deploy did (builds.deploy), in words.
TRIGGER_LABELS = {"push": "push", "rebuild": "rebuild", "merge": "merge",
                  "refresh": "refresh from production", "shell": "odoo-update in a terminal"}
DEPLOY_LABELS = {
    "first": "first: install without demo data",
    "fast": "fast: restart on the new code, no update",
    "full": "full: maintenance, snapshot, then update the modules",
    "copy": "copy: a neutralized copy of production",
    "update": "update: the previous build's database, updated",
    "fresh": "fresh: a new database (no production yet)",
}


def db() -> Database:
    return current_app.extensions[EXTENSION]["db"]


def config() -> Config:
    return current_app.extensions[EXTENSION]["config"]


def services() -> Services:
    """What the actions in appliance.jobs expect: the config and the state database."""
    return Services(config(), db())


def current_user() -> dict | None:
    """The signed-in user (loaded once per request by the login hook), or None."""
    return g.get("user")


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render(page: str, fragment: str, **context) -> str:
    """The fragment for an htmx request, the whole page otherwise."""
    return render_template(fragment if is_htmx() else page, **context)


# The session key under which a refused form's fields wait for the page they go back to.
REFUSED_FORM = "refused_form"


def refusals_back_to(back: Callable[..., str], keep_form: bool = False):
    """Declare where a POST view's refusals go: a UserError it raises (bad input, a move
    the rules forbid) is shown as an error flash on the page `back(**view_args)` names,
    the page its form is on, reached by a 303. The view's transaction is rolled back, so
    nothing changes. With keep_form, the fields typed (never a password or the CSRF
    token) are kept for that page to show again (`refused_form`). The app's UserError
    handler applies this; a view that declares nothing gets the error page (400)."""
    def mark(view):
        view.refusals_back_to = (back, keep_form)
        return view
    return mark


def refused_form() -> dict:
    """The fields of a form refused just before (see refusals_back_to), once; else {}."""
    return session.pop(REFUSED_FORM, None) or {}


def visible_project(conn, name: str) -> dict:
    """The project if the current user may see it; NotFound (a 404) otherwise, so that
    the names of other people's projects are not revealed."""
    project = store_projects.get_project(conn, name)
    require_access(conn, project)
    return project


def visible_build(conn, build_id: int) -> tuple[dict, dict]:
    """The build and its project if the current user may see them; NotFound otherwise."""
    build = store_builds.get_build(conn, build_id)
    project = store_projects.project_by_id(conn, build["project_id"])
    require_access(conn, project)
    return build, project


def visible_branch(conn, project_name: str, branch_name: str) -> tuple[dict, dict]:
    """The project and its branch if the current user may see them; NotFound otherwise."""
    project = visible_project(conn, project_name)
    return project, store_projects.get_branch(conn, project, branch_name)


def require_access(conn, project: dict) -> None:
    user = current_user()
    if user is None or not store_users.can_access(conn, user, project):
        raise NotFound(f"no project {project['name']!r}")


def build_colour(build: dict) -> str:
    """The colour of a build's cell: what Odoo.sh users read at a glance."""
    if build["state"] in IN_PROGRESS_STATES:
        return "grey"
    if build["state"] in ("stopped", "dropped"):
        return "dark"
    if build["result"] == "success":
        return "green"
    if build["result"] == "warning":
        return "yellow"
    if build["result"] == "failure" or build["state"] == "failed":
        return "red"
    return "grey"


def is_finished(build: dict) -> bool:
    return build["state"] in store_builds.FINISHED_STATES


def elapsed_seconds(build: dict) -> float | None:
    """Seconds from start to finish (or to now while in progress), None before it starts."""
    if not build.get("started_at"):
        return None
    end = build.get("finished_at") or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (end - build["started_at"]).total_seconds())


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_time(value: dt.datetime | str | None) -> str:
    """A moment in UTC; an ISO string (as kept in events' data) is read first."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
    if value is None:
        return "–"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def may(project: dict, action: str, stage: str | None = None) -> bool:
    """For templates: whether the current user may (buttons and tabs a user may not use
    are not shown; the routes refuse them anyway)."""
    with db().transaction() as conn:
        return policy.allows(conn, current_user(), project, action, stage)


def install_template_helpers(app) -> None:
    app.jinja_env.filters["duration"] = format_duration
    app.jinja_env.filters["when"] = format_time
    app.jinja_env.globals.update(colour=build_colour, current_user=current_user,
                                 is_finished=is_finished, elapsed=elapsed_seconds,
                                 log_names=layout.LOG_FILES, trigger_labels=TRIGGER_LABELS,
                                 deploy_labels=DEPLOY_LABELS,
                                 offline_demo=lambda: config().server.offline_demo, may=may)
