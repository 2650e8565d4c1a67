"""Custom domains of a project's production and staging branches, on its settings page.

Each domain shows what DNS says of it against where it must point (this appliance's
addresses: those of the base domain), and, behind the proxy, the certificate Caddy
serves for it. Adding, removing and choosing the primary take a project admin.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, request

from appliance.jobs import proxy as proxy_jobs
from appliance.runtime import caddy, dns
from appliance.store import domains as domains_store
from appliance.store import projects as store_projects
from appliance.web import guard
from appliance.web.common import (config, current_user, db, refusals_back_to, services,
                                  visible_project)
from appliance.web.projects import settings_page

log = logging.getLogger(__name__)

blueprint = Blueprint("domains", __name__)


def dns_state(name: str, expected: list[str], base_domain: str) -> dict:
    """What DNS says of a domain against where it must point."""
    found = dns.addresses(name)
    ok = bool(found) and bool(expected) and set(found) <= set(expected)
    if not found:
        text = "does not resolve yet"
    elif not expected:
        text = f"points at {', '.join(found)} (the base domain {base_domain} does not " \
               "resolve here: cannot compare)"
    elif ok:
        text = f"points at this appliance ({', '.join(found)})"
    else:
        text = f"points at {', '.join(found)}, not at this appliance"
    return {"ok": ok, "text": text}


@blueprint.app_template_global("project_domains")
def project_domains(project: dict) -> dict:
    """The project's domains with their DNS and certificate states, for its settings."""
    cfg = config()
    base = cfg.proxy.base_domain
    with db().transaction() as conn:
        rows = domains_store.of_project(conn, project)
        branches = [b for b in store_projects.list_branches(conn, project)
                    if b["stage"] in domains_store.STAGES]
    expected = dns.addresses(base) if base and rows else []
    for row in rows:
        row["dns"] = dns_state(row["name"], expected, base)
        row["certificate"] = (caddy.served_certificate(cfg.proxy.https_port, row["name"])
                              if base else "no proxy configured")
    return {"rows": rows, "branches": branches, "proxy": bool(base),
            "expected": expected, "base": base}


def _changed(project: dict, what: str) -> None:
    log.info("%s %s of %s", current_user()["name"], what, project["name"])
    proxy_jobs.refresh(services())  # Caddy serves the change now


@blueprint.post("/projects/<name>/domains")
@guard.project("settings")
@refusals_back_to(settings_page)
def add(name: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        branch = store_projects.get_branch(conn, project, request.form.get("branch", ""))
        row = domains_store.add(conn, project, branch, request.form.get("domain", ""),
                                config().proxy.base_domain, current_user())
    _changed(project, f"added the domain {row['name']} to {branch['name']}")
    flash(f"{row['name']} added to {branch['name']}"
          f"{' as its primary domain' if row['is_primary'] else ''}.")
    return redirect(settings_page(name), code=303)


@blueprint.post("/projects/<name>/domains/<domain>/primary")
@guard.project("settings")
@refusals_back_to(settings_page)
def primary(name: str, domain: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        row = domains_store.make_primary(conn, project, domain)
    _changed(project, f"made {row['name']} a primary domain")
    flash(f"{row['name']} is the primary domain: the branch's others redirect to it.")
    return redirect(settings_page(name), code=303)


@blueprint.post("/projects/<name>/domains/<domain>/remove")
@guard.project("settings")
@refusals_back_to(settings_page)
def remove(name: str, domain: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        domains_store.remove(conn, project, domain)
    _changed(project, f"removed the domain {domain}")
    flash(f"{domain} removed.")
    return redirect(settings_page(name), code=303)
