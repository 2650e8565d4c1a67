"""An archived project changes no more through the web: a hook after the guard refuses
every POST, PUT, PATCH or DELETE aimed at it (its page's form comes back with the reason,
as any refusal; see app.refused). Reading stays allowed. Pushes are refused by
jobs/push.py; an appliance admin unarchives it from the admin pages."""

from __future__ import annotations

from flask import g, request

from appliance.jobs import stages
from appliance.web.auth import UNSAFE_METHODS


def refuse_changes():
    if request.method not in UNSAFE_METHODS:
        return None
    target = g.get("policy_target")  # set by guard.enforce for a project's routes
    if target:
        stages.not_archived(target[0])
    return None


def install(app) -> None:
    """Registered after auth.install: runs after the login wall, the guard and CSRF."""
    app.before_request(refuse_changes)
