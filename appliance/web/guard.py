"""Every route declares who may reach it, and one hook enforces that before its view runs.

A view carries one rule (the decorators below); a route without one is refused (and the
permission matrix test fails on it). For a project action, the hook finds what the URL
names (a build, a mail, a backup, a branch, the project) and asks appliance.policy with
that thing's stage. The views still load what they show through common.visible_*, which
hide other people's projects the same way.

The hook runs after the login wall and before the CSRF check: a refused POST is refused
for what it asks whatever its token, and an allowed one still needs the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import abort, current_app, g, request

from appliance import policy
from appliance.errors import NotFound
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.web.common import current_user, db

log = logging.getLogger(__name__)

RULE_ATTRIBUTE = "access_rule"
# Routes Flask makes itself.
BUILT_IN = {"static"}


@dataclass(frozen=True)
class Rule:
    # "public": no sign-in; "signed_in": any signed-in user; "appliance_admin";
    # "self_authenticated": the view checks its caller itself (git's tokens, Caddy's
    # questions); "project": a policy action on what the URL names.
    kind: str
    action: str | None = None
    stage: str | None = None  # asked instead of the target's own (policy.ANY_STAGE)


def _mark(rule: Rule):
    def mark(view):
        setattr(view, RULE_ATTRIBUTE, rule)
        return view
    return mark


public = _mark(Rule("public"))
signed_in = _mark(Rule("signed_in"))
appliance_admin = _mark(Rule("appliance_admin"))
self_authenticated = _mark(Rule("self_authenticated"))


def project(action: str, stage: str | None = None):
    """The view acts on a project (or a stage of it): `action` of appliance.policy."""
    if action not in policy.ACTIONS and action not in policy.PROJECT_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return _mark(Rule("project", action, stage))


def rule_of(endpoint: str | None) -> Rule | None:
    if endpoint in BUILT_IN:
        return Rule("public")
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, RULE_ATTRIBUTE, None)


def enforce():
    if request.endpoint is None:  # no such route: a 404 follows
        return None
    rule = rule_of(request.endpoint)
    if rule is None:
        log.error("route %s declares no access rule: refused", request.endpoint)
        abort(403, description="This page declares no access rule.")
    if rule.kind in ("public", "self_authenticated", "signed_in"):
        return None  # the login wall has let only signed-in users reach signed_in views
    user = current_user()
    if rule.kind == "appliance_admin":
        if not user or not user["is_admin"]:
            raise NotFound("no such page")
        return None
    with db().transaction() as conn:
        project, stage = target(conn, request.view_args or {})
        asked = rule.stage if rule.stage is not None else stage
        if rule.action in policy.PROJECT_ACTIONS:
            asked = None
        elif asked is None and rule.action != "view":
            asked = policy.ANY_STAGE
        policy.require(conn, user, project, rule.action, asked)
    g.policy_target = (project, stage)
    return None


def target(conn, args: dict) -> tuple[dict, str | None]:
    """The project a URL names and the stage of the thing in it (None: the project)."""
    if "build_id" in args:
        build = store_builds.get_build(conn, args["build_id"])
        return store_projects.project_by_id(conn, build["project_id"]), build["stage"]
    if "mail_id" in args:
        row = conn.execute("""SELECT b.project_id, b.stage FROM mails m
                              JOIN builds b ON b.id = m.build_id WHERE m.id = %s""",
                           (args["mail_id"],)).fetchone()
        if row is None:
            raise NotFound(f"no mail #{args['mail_id']}")
        return store_projects.project_by_id(conn, row["project_id"]), row["stage"]
    if "backup_id" in args:
        row = conn.execute("""SELECT k.project_id, b.stage FROM backups k
                              LEFT JOIN branches b ON b.id = k.branch_id WHERE k.id = %s""",
                           (args["backup_id"],)).fetchone()
        if row is None:
            raise NotFound(f"no backup #{args['backup_id']}")
        # A backup whose branch is gone was production's (only production is backed up).
        return (store_projects.project_by_id(conn, row["project_id"]),
                row["stage"] or "production")
    if "name" in args:
        project = store_projects.get_project(conn, args["name"])
        if "branch" in args:
            return project, store_projects.get_branch(conn, project, args["branch"])["stage"]
        return project, None
    raise NotFound("this page names no project")
