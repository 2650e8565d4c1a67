"""The signed-in user's own SSH keys: list, add, remove (reached from the account page).

Every route acts on the signed-in user's keys only: a key of someone else is not found.
The page also says how to use them: the SSH remote of each of the user's projects and
the commands that open a build's shell.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, request, url_for

from appliance.ssh import address
from appliance.store import projects as store_projects
from appliance.store import ssh_keys
from appliance.web import guard
from appliance.web.common import config, current_user, db, refusals_back_to, refused_form, render

log = logging.getLogger(__name__)

blueprint = Blueprint("keys", __name__)


def keys_url() -> str:
    return url_for("keys.index")


@blueprint.app_template_global("ssh_remote")
def ssh_remote(project_name: str) -> str:
    """A project's git remote over SSH, for the clone box of its page."""
    return address.remote(config(), project_name)


@blueprint.get("/account/keys")
@guard.signed_in
def index():
    user = current_user()
    cfg = config()
    with db().transaction() as conn:
        keys = ssh_keys.of_user(conn, user["id"])
        projects = store_projects.list_projects(conn, user)
    remotes = [(p["name"], address.remote(cfg, p["name"])) for p in projects]
    return render("ssh_keys.html", "_ssh_keys.html", keys=keys, remotes=remotes,
                  destination=address.destination(cfg), form=refused_form())


@blueprint.post("/account/keys")
@guard.signed_in
@refusals_back_to(keys_url, keep_form=True)
def add():
    user = current_user()
    with db().transaction() as conn:
        row = ssh_keys.add(conn, user, request.form.get("key", "")[:ssh_keys.MAX_LINE * 2],
                           request.form.get("name", ""))
    log.info("user %s added the SSH key %r (%s)", user["name"], row["name"], row["fingerprint"])
    flash(f"Key {row['name']!r} added: {row['fingerprint']}.")
    return redirect(keys_url(), 303)


@blueprint.post("/account/keys/<int:key_id>/remove")
@guard.signed_in
@refusals_back_to(keys_url)
def remove(key_id: int):
    user = current_user()
    with db().transaction() as conn:
        row = ssh_keys.remove(conn, user["id"], key_id)
    log.info("user %s removed the SSH key %r (%s)", user["name"], row["name"],
             row["fingerprint"])
    flash(f"Key {row['name']!r} removed: it no longer opens anything.")
    return redirect(keys_url(), 303)
