"""The appliance admins' pages for projects: every project with its use of the disk and
its running builds; create one (the same job as `appliance project create`), rename it
while nothing was pushed to it, archive it and bring it back. Anyone but an appliance
admin gets a 404 (guard.appliance_admin)."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance.errors import ConfigError, UserError
from appliance.jobs import disk_use, project_admin
from appliance.jobs import projects as project_jobs
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.web import audit_hook, guard
from appliance.web.common import (config, current_user, db, refused_form, refusals_back_to,
                                  services)

log = logging.getLogger(__name__)

blueprint = Blueprint("admin", __name__)

# What the running builds' table lists: queued and under way too.
LIVE_STATES = ("queued", *store_builds.ACTIVE_STATES, "running")


@blueprint.app_template_filter("bytes")
def human_bytes(value: int | None) -> str:
    """1536 -> '1.5 KiB'; None -> '–'."""
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def projects_page(**_args) -> str:
    return url_for("admin.projects")


def project_page(name: str, **_args) -> str:
    return url_for("admin.project", name=name)


@blueprint.get("/admin")
@guard.appliance_admin
def index():
    return redirect(projects_page())


def live_builds(conn, project_id: int | None = None) -> list[dict]:
    """Builds queued, under way or serving, with their project and branch."""
    where, params = ("AND b.project_id = %s", [project_id]) if project_id else ("", [])
    return conn.execute(
        f"""SELECT b.id, b.state, b.result, b.stage, b.created_at, b.last_used_at,
                   p.name AS project, br.name AS branch
            FROM builds b JOIN projects p ON p.id = b.project_id
            JOIN branches br ON br.id = b.branch_id
            WHERE b.state = ANY(%s) {where} ORDER BY p.name, b.id DESC""",
        [list(LIVE_STATES), *params]).fetchall()


@blueprint.get("/admin/projects")
@guard.appliance_admin
def projects():
    with db().transaction() as conn:
        rows = store_projects.list_projects(conn)
        use = disk_use.summaries(conn, config(), rows)
        builds = live_builds(conn)
    cfg = config()
    return render_template("admin_projects.html", projects=rows, use=use, builds=builds,
                           versions=sorted(cfg.odoo.versions), typed=refused_form(),
                           default_version=cfg.odoo.default_version,
                           demo_allowed=cfg.server.offline_demo)


@blueprint.post("/admin/projects")
@guard.appliance_admin
@refusals_back_to(projects_page, keep_form=True)
def create():
    """Create a project as `appliance project create` does; the admin lands on its page."""
    form = request.form
    try:
        created = project_jobs.create(
            services(), form.get("name", "").strip(), form.get("odoo_version") or None,
            modules=form.get("modules", ""), demo=form.get("demo") == "1")
    except ConfigError as exc:  # an Odoo version the config does not name
        raise UserError(str(exc)) from None
    audit_hook.note(project=created)
    log.info("%s created project %s (Odoo %s)", current_user()["name"], created["name"],
             created["odoo_version"])
    flash(f"Project {created['name']} created (Odoo {created['odoo_version']}). "
          "Push a branch to it to get a build.")
    return redirect(url_for("projects.project", name=created["name"]), code=303)


@blueprint.get("/admin/projects/<name>")
@guard.appliance_admin
def project(name: str):
    svc = services()
    with db().transaction() as conn:
        row = store_projects.get_project(conn, name)
        blockers = project_admin.rename_blockers(conn, row)
        builds = live_builds(conn, row["id"])
        busy = project_admin.busy_builds(conn, row)
    return render_template("admin_project.html", project=row, use=disk_use.measure(svc, row),
                           builds=builds, busy=busy, rename_blockers=blockers)


@blueprint.post("/admin/projects/<name>/rename")
@guard.appliance_admin
@refusals_back_to(project_page)
def rename(name: str):
    renamed = project_admin.rename(services(), name, request.form.get("new_name", ""))
    audit_hook.note(project=renamed, details={"renamed_from": name})
    flash(f"Project {name} is now {renamed['name']}: its git remote is "
          f"{config().server.public_url.rstrip('/')}/git/{renamed['name']}.git")
    return redirect(project_page(renamed["name"]), code=303)


@blueprint.post("/admin/projects/<name>/archive")
@guard.appliance_admin
@refusals_back_to(project_page)
def archive(name: str):
    stopped = project_admin.archive(services(), name, current_user())
    audit_hook.note(details={"servers_stopped": stopped})
    flash(f"{name} is archived: pushes and changes are refused and its members no longer "
          f"see it. {len(stopped)} server(s) are being stopped; its data and backups are kept.")
    return redirect(project_page(name), code=303)


@blueprint.post("/admin/projects/<name>/unarchive")
@guard.appliance_admin
@refusals_back_to(project_page)
def unarchive(name: str):
    project_admin.unarchive(services(), name)
    flash(f"{name} is back: pushes and changes are accepted again. Its servers stay "
          "stopped until a push, a rebuild or a start.")
    return redirect(project_page(name), code=303)
