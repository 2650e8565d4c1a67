"""The audit trail's pages: the whole appliance's (appliance admins) and one project's
(its admins: the "settings" action), filterable by user, project, action and dates,
newest first, a page at a time."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, request, url_for

from appliance.errors import UserError
from appliance.store import audit as store_audit
from appliance.web import guard
from appliance.web.common import db, render, visible_project

blueprint = Blueprint("audit", __name__)

OUTCOME_LABELS = {"ok": "done", "refused": "refused", "denied": "denied",
                  "not_found": "not found", "error": "failed"}


def _page_args() -> tuple[int | None, int | None]:
    values = []
    for key in ("before", "after"):
        text = request.args.get(key, "")
        if text and not (text.isascii() and text.isdigit() and len(text) < 19):
            raise UserError(f"{key} must be a row number")
        values.append(int(text) if text else None)
    return values[0], values[1]


def _show(filters: store_audit.Filters, endpoint: str, project: dict | None = None, **url):
    before, after = _page_args()
    with db().transaction() as conn:
        page = store_audit.search(conn, filters, before=before, after=after)
        choices = store_audit.choices(conn, filters.project_id)
    query = filters.query()
    older = url_for(endpoint, **url, **query, before=page.older) if page.older else None
    newer = url_for(endpoint, **url, **query, after=page.newer) if page.newer else None
    return render("audit.html", "_audit_rows.html", rows=page, filters=filters,
                  choices=choices, project=project, older=older, newer=newer,
                  action_url=url_for(endpoint, **url), outcomes=OUTCOME_LABELS)


@blueprint.get("/admin/audit")
@guard.appliance_admin
def appliance_trail():
    return _show(store_audit.Filters.from_args(request.args), "audit.appliance_trail")


@blueprint.get("/projects/<name>/audit")
@guard.project("settings")
def project_trail(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
    # Its own rows only, whatever the project was named when they were written.
    filters = replace(store_audit.Filters.from_args(request.args, project_id=project["id"]),
                      project="")
    return _show(filters, "audit.project_trail", project=project, name=name)
