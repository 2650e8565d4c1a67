"""JSON twins of the pages, for scripts (same session login), and the health check."""

from __future__ import annotations

import logging

import psycopg
from flask import Blueprint, jsonify, request, url_for

from appliance import policy
from appliance import layout
from appliance.buildjson import build_json
from appliance.errors import UserError
from appliance.store import builds as store_builds
from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web import guard
from appliance.web.common import (config, current_user, db, iso, visible_branch, visible_build,
                                  visible_project)

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__)

# The health check answers within this, even when the state database hangs.
HEALTH_TIMEOUT_SECONDS = 5
# At most this many builds, or events of a history, per answer, newest first.
BUILDS_LIMIT = 100
HISTORY_LIMIT = 100


@blueprint.get("/-/health")
@guard.public
def health():
    try:
        with db().pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:  # PoolTimeout is a psycopg.OperationalError too
        log.warning("health check: state database unreachable: %s", exc)
        return jsonify(status="error", error="state database unreachable"), 503
    return jsonify(status="ok")


@blueprint.get("/api/projects")
@guard.signed_in
def projects():
    with db().transaction() as conn:
        rows = store_projects.list_projects(conn, current_user())
        summaries = overview.project_summaries(conn, [p["id"] for p in rows])
    return jsonify([{"name": p["name"], "odoo_version": p["odoo_version"], "demo": p["demo"],
                     "production_branch": p["production_branch"],
                     "branch_count": summaries[p["id"]]["branch_count"],
                     "latest_build": summaries[p["id"]]["latest_build"]} for p in rows])


@blueprint.get("/api/projects/<name>/branches")
@guard.project("view")
def branches(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        visible = policy.visible_stages(conn, current_user(), project)
        rows = [b for b in store_projects.list_branches(conn, project) if b["stage"] in visible]
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
@guard.project("view")
def builds(name: str):
    """A page of the project's builds, newest first: `?before=<id>` for older ones,
    `?limit=` (at most BUILDS_LIMIT), `?branch=`. A full page links the next in `Link`."""
    branch = request.args.get("branch") or None
    before = whole_number_arg("before", 1, 2**31 - 1)
    limit = whole_number_arg("limit", 1, BUILDS_LIMIT) or BUILDS_LIMIT
    with db().transaction() as conn:
        project = visible_project(conn, name)
        visible = policy.visible_stages(conn, current_user(), project)
        page = store_builds.list_builds(conn, project, branch, limit=limit, before=before)
        rows = [b for b in page if b["stage"] in visible]
        steps = overview.steps_of_builds(conn, [b["id"] for b in rows])
    response = jsonify([build_json(config(), b, steps.get(b["id"], [])) for b in rows])
    return with_next_page(response, page, limit, "api.builds", name=name, branch=branch)


@blueprint.get("/api/builds/<int:build_id>")
@guard.project("view")
def build(build_id: int):
    """One build, in the shape of the builds list (appliance.buildjson)."""
    with db().transaction() as conn:
        row, _project = visible_build(conn, build_id)
        steps = store_builds.steps(conn, build_id)
    return jsonify(build_json(config(), row, steps))


@blueprint.get("/api/projects/<name>/branches/<path:branch>/history")
@guard.project("view")
def history(name: str, branch: str):
    """A page of the branch's history (the page's History tab), newest first: pushes'
    commits, moves, merges, rebuilds, deploys... `?before=<event id>` and `?limit=` (at
    most HISTORY_LIMIT) page it as the builds list is paged."""
    before = whole_number_arg("before", 1, 2**63 - 1)
    limit = whole_number_arg("limit", 1, HISTORY_LIMIT) or HISTORY_LIMIT
    with db().transaction() as conn:
        _project, row = visible_branch(conn, name, branch)
        events = overview.branch_history(conn, row["id"], limit=limit, before=before)
    response = jsonify([event_json(e) for e in events])
    return with_next_page(response, events, limit, "api.history", name=name, branch=branch)


def event_json(event: dict) -> dict:
    build_id = event["build_id"]
    return {"id": event["id"], "kind": event["kind"], "message": event["message"],
            "build_id": build_id,
            "build_page": layout.build_page(config(), build_id) if build_id else None,
            "user": event["user_name"], "data": event["data"],
            "created_at": iso(event["created_at"])}


def with_next_page(response, rows: list[dict], limit: int, endpoint: str, **args):
    """A full page links the next one (older rows, `before` the last id) in `Link`."""
    if len(rows) == limit:
        after = url_for(endpoint, **args, before=rows[-1]["id"],
                        limit=request.args.get("limit") and limit)
        response.headers["Link"] = f'<{after}>; rel="next"'
    return response


def whole_number_arg(name: str, low: int, high: int) -> int | None:
    """The query argument as an int in [low, high], None when absent; else a 400."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    well_formed = value.isascii() and value.isdigit() and len(value) <= 19
    if not well_formed or not low <= int(value) <= high:
        raise UserError(f"{name} must be a whole number from {low} to {high}")
    return int(value)
