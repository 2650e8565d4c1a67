"""The appliance admins' page for people: every user, invite one (an account without a
password and a one-time link that sets it, shown once to the admin: no mail needed),
disable and enable, a new password link, make an admin or not (never the last one)."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance.store import admins as store_admins
from appliance.store import users as store_users
from appliance.web import guard
from appliance.web.account import password_link_url
from appliance.web.common import current_user, db, refused_form, refusals_back_to

log = logging.getLogger(__name__)

blueprint = Blueprint("admin_users", __name__)


def users_page(**_args) -> str:
    return url_for("admin_users.users")


@blueprint.get("/admin/users")
@guard.appliance_admin
def users():
    with db().transaction() as conn:
        rows = store_admins.user_overview(conn)
    return render_template("admin_users.html", users=rows, typed=refused_form())


def link_page(user: dict, token: str, invited: bool):
    """The link, shown this once (never stored in clear, never flashed into a cookie)."""
    page = render_template("admin_link.html", user=user, link=password_link_url(token),
                           invited=invited, hours=int(
                               store_users.PASSWORD_LINK_LIFETIME.total_seconds() // 3600))
    return page, 200, {"Cache-Control": "no-store"}


@blueprint.post("/admin/users")
@guard.appliance_admin
@refusals_back_to(users_page, keep_form=True)
def invite():
    name = request.form.get("name", "").strip()
    with db().transaction() as conn:
        user = store_users.create_user(conn, name, None, is_admin=request.form.get("admin") == "1")
        token = store_users.reset_password(conn, name)
    log.info("%s invited %s%s", current_user()["name"], name,
             " (appliance admin)" if user["is_admin"] else "")
    return link_page(user, token, invited=True)


@blueprint.post("/admin/users/<user_name>/password")
@guard.appliance_admin
@refusals_back_to(users_page)
def reset(user_name: str):
    with db().transaction() as conn:
        token = store_users.reset_password(conn, user_name)
        user = store_users.user_by_name(conn, user_name)
    log.info("%s made a new password link for %s", current_user()["name"], user_name)
    return link_page(user, token, invited=False)


@blueprint.post("/admin/users/<user_name>/disable")
@guard.appliance_admin
@refusals_back_to(users_page)
def disable(user_name: str):
    with db().transaction() as conn:
        store_users.set_disabled(conn, user_name, True)
    log.info("%s disabled %s", current_user()["name"], user_name)
    flash(f"{user_name} is disabled: signed out everywhere, their tokens and links refused.")
    return redirect(users_page(), code=303)


@blueprint.post("/admin/users/<user_name>/enable")
@guard.appliance_admin
@refusals_back_to(users_page)
def enable(user_name: str):
    with db().transaction() as conn:
        store_users.set_disabled(conn, user_name, False)
    log.info("%s enabled %s", current_user()["name"], user_name)
    flash(f"{user_name} is enabled: they can sign in again.")
    return redirect(users_page(), code=303)


@blueprint.post("/admin/users/<user_name>/admin")
@guard.appliance_admin
@refusals_back_to(users_page)
def set_admin(user_name: str):
    make = request.form.get("admin") == "1"
    with db().transaction() as conn:
        store_admins.set_admin(conn, user_name, make)
    log.info("%s made %s %s", current_user()["name"], user_name,
             "an appliance admin" if make else "no longer an appliance admin")
    flash(f"{user_name} is {'now' if make else 'no longer'} an appliance admin.")
    return redirect(users_page(), code=303)
