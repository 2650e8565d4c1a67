"""JSON twins of the pages, for scripts (same session login), and the health check."""

from __future__ import annotations

import logging

import psycopg
from flask import Blueprint, jsonify, request, url_for

from appliance import layout
from appliance.errors import UserError
from appliance.store import builds as store_builds
from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web.common import config, current_user, db, iso, visible_project

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__)

# The health check answers within this, even when the state database hangs.
HEALTH_TIMEOUT_SECONDS = 5
# At most this many builds per answer, newest first.
BUILDS_LIMIT = 100


@blueprint.get("/-/health")
def health():
    try:
        with db().pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:  # PoolTimeout is a psycopg.OperationalError too
        log.warning("health check: state database unreachable: %s", exc)
        return jsonify(status="error", error="state database unreachable"), 503
    return jsonify(status="ok")


@blueprint.get("/api/projects")
def projects():
    with db().transaction() as conn:
        rows = store_projects.list_projects(conn, current_user())
        summaries = overview.project_summaries(conn, [p["id"] for p in rows])
    return jsonify([{"name": p["name"], "odoo_version": p["odoo_version"], "demo": p["demo"],
                     "production_branch": p["production_branch"],
                     "branch_count": summaries[p["id"]]["branch_count"],
                     "latest_build": summaries[p["id"]]["latest_build"]} for p in rows])


@blueprint.get("/api/projects/<name>/branches")
def branches(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        rows = store_projects.list_branches(conn, project)
        latest = overview.recent_builds_by_branch(conn, project["id"], per_branch=1)
    return jsonify([branch_json(project, b, (latest.get(b["id"]) or [None])[0]) for b in rows])


def branch_json(project: dict, branch: dict, build: dict | None) -> dict:
    return {
        "name": branch["name"], "stage": branch["stage"],
        "push_behaviour": branch["push_behaviour"],
        "page": config().server.public_url.rstrip("/") + url_for(
            "branches.branch", name=project["name"], branch=branch["name"]),
        "latest_build": {"id": build["id"], "state": build["state"], "result": build["result"],
                         "trigger": build["trigger"]} if build else None,
    }


@blueprint.get("/api/projects/<name>/builds")
def builds(name: str):
    """A page of the project's builds, newest first: `?before=<id>` for older ones,
    `?limit=` (at most BUILDS_LIMIT), `?branch=`. A full page links the next in `Link`."""
    branch = request.args.get("branch") or None
    before = whole_number_arg("before", 1, 2**31 - 1)
    limit = whole_number_arg("limit", 1, BUILDS_LIMIT) or BUILDS_LIMIT
    with db().transaction() as conn:
        project = visible_project(conn, name)
        rows = store_builds.list_builds(conn, project, branch, limit=limit, before=before)
        steps = overview.steps_of_builds(conn, [b["id"] for b in rows])
    response = jsonify([build_json(b, steps.get(b["id"], [])) for b in rows])
    if len(rows) == limit:
        after = url_for("api.builds", name=name, branch=branch, before=rows[-1]["id"],
                        limit=request.args.get("limit") and limit)
        response.headers["Link"] = f'<{after}>; rel="next"'
    return response


def whole_number_arg(name: str, low: int, high: int) -> int | None:
    """The query argument as an int in [low, high], None when absent; else a 400."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    well_formed = value.isascii() and value.isdigit() and len(value) <= 10
    if not well_formed or not low <= int(value) <= high:
        raise UserError(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def build_json(build: dict, steps: list[dict]) -> dict:
    return {
        "id": build["id"], "project": build["project"], "branch": build["branch"],
        "stage": build["stage"], "commit": build["commit"], "message": build["commit_message"],
        "author": build["author"], "state": build["state"], "result": build["result"],
        "reason": build["reason"], "trigger": build["trigger"], "deploy": build["deploy"],
        "plan": build["plan"], "url": layout.build_url(config(), build),
        "page": layout.build_page(config(), build["id"]),
        "steps": [{"name": s["name"], "state": s["state"], "seconds": s["seconds"]}
                  for s in steps],
        "created_at": iso(build["created_at"]), "started_at": iso(build["started_at"]),
        "finished_at": iso(build["finished_at"]),
    }
