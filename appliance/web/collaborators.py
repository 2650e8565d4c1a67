"""A project's collaborators and its permission matrix: who is a member with which role,
and what each role may do on each stage (appliance.policy). Every member may read both;
the project's admins change them."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance import policy
from appliance.store import members as store_members
from appliance.web import guard
from appliance.web.common import current_user, db, refusals_back_to, visible_project

log = logging.getLogger(__name__)

blueprint = Blueprint("collaborators", __name__)

STAGE_LABELS = {"production": "Production", "staging": "Staging",
                "development": "Development"}
EDITABLE_ROLES = ("tester", "developer")


def page(name: str, **_args) -> str:
    return url_for("collaborators.index", name=name)


@blueprint.get("/projects/<name>/collaborators")
@guard.project("view")
def index(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        members = store_members.list_members(conn, project)
        matrix = policy.matrix(conn, project)
        editable = policy.allows(conn, current_user(), project, "settings")
    return render_template("collaborators.html", project=project, members=members,
                           matrix=matrix, editable=editable, roles=store_members.ROLES,
                           editable_roles=EDITABLE_ROLES, stages=policy.STAGES,
                           stage_labels=STAGE_LABELS, actions=policy.ACTIONS,
                           defaults=policy.DEFAULT_MATRIX)


@blueprint.post("/projects/<name>/collaborators")
@guard.project("settings")
@refusals_back_to(page, keep_form=True)
def add(name: str):
    """Add a collaborator, or change one's role (the form names the user)."""
    role = request.form.get("role", "developer")
    with db().transaction() as conn:
        project = visible_project(conn, name)
        user, old = store_members.set_role(conn, project, request.form.get("user", ""), role)
    log.info("%s made %s %s of %s (was %s)", current_user()["name"], user["name"], role, name,
             old or "not a member")
    flash(f"{user['name']} is now {role} of {name}." if old is None or old != role
          else f"{user['name']} was already {role}.")
    return redirect(page(name), code=303)


@blueprint.post("/projects/<name>/collaborators/<user>/remove")
@guard.project("settings")
@refusals_back_to(page)
def remove(name: str, user: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        row = store_members.remove(conn, project, user)
    log.info("%s removed %s (%s) from %s", current_user()["name"], row["name"], row["role"],
             name)
    flash(f"{row['name']} is no longer a collaborator of {name}.")
    return redirect(page(name), code=303)


@blueprint.post("/projects/<name>/permissions")
@guard.project("settings")
@refusals_back_to(page)
def permissions(name: str):
    """The tester and developer columns as the form's checkboxes say (`stage:action:role`
    for each granted cell), or the defaults again with `reset`."""
    granted = set()
    if not request.form.get("reset"):
        for stage in policy.STAGES:
            for action in policy.ACTIONS:
                for role in EDITABLE_ROLES:
                    if request.form.get(f"{stage}:{action}:{role}") == "1":
                        granted.add((stage, action, role))
    else:
        granted = {(stage, action, role) for (stage, action), roles in policy.DEFAULTS.items()
                   for role in roles if role in EDITABLE_ROLES}
    with db().transaction() as conn:
        project = visible_project(conn, name)
        changed = policy.set_matrix(conn, project, granted).differences()
    log.info("%s set the permissions of %s: %d cells differ from the defaults",
             current_user()["name"], name, len(changed))
    flash("Permissions reset to the defaults." if request.form.get("reset")
          else f"Permissions saved ({len(changed)} differ from the defaults).")
    return redirect(page(name), code=303)
