"""The projects list and a project's page: stages, branches and their builds."""

from __future__ import annotations

from flask import Blueprint, render_template

from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web.common import config, current_user, db, render, visible_project

blueprint = Blueprint("projects", __name__)

STAGES = (("production", "Production"), ("staging", "Staging"), ("development", "Development"))
# Cells shown per branch row: about a screen's width, like Odoo.sh's builds row.
BUILDS_PER_BRANCH = 12


@blueprint.get("/")
def index():
    with db().transaction() as conn:
        projects = store_projects.list_projects(conn, current_user())
        summaries = overview.project_summaries(conn, [p["id"] for p in projects])
    return render_template("projects.html", projects=projects, summaries=summaries)


@blueprint.get("/projects/<name>")
def project(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        branches = store_projects.list_branches(conn, project)
        builds = overview.recent_builds_by_branch(conn, project["id"], BUILDS_PER_BRANCH)
    stages = [(key, label, [b for b in branches if b["stage"] == key]) for key, label in STAGES]
    remote = f"{config().server.public_url.rstrip('/')}/git/{project['name']}.git"
    return render("project.html", "_branches.html", project=project, stages=stages,
                  builds=builds, remote=remote, names=[b["name"] for b in branches])
