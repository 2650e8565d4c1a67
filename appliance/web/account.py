"""The signed-in user's own page: their password, two-factor sign-in, personal access
tokens (and a link to their SSH keys); and the page a one-time link opens to set a
password (a reset or an invitation, made by an appliance admin).

Every route here acts on the signed-in user only (guard.signed_in), but the password
link's, which is public and checks the token in its URL. A new token is shown once, in
the answer to the form that made it, never stored in the clear nor put in the session.
A TOTP secret is shown while it is being set up only.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (Blueprint, flash, g, make_response, redirect, render_template, request,
                   session, url_for)

from appliance import passwords
from appliance.errors import UserError
from appliance.store import totp as totp_store
from appliance.store import users as store_users
from appliance.web import auth, guard
from appliance.web.common import config, current_user, db, refusals_back_to, refused_form

log = logging.getLogger(__name__)

blueprint = Blueprint("account", __name__)

# The expiries the token form offers, in days ("never" and a date besides).
EXPIRY_CHOICES = (7, 30, 90, 365)
# Pages with a secret on them (a new token, a TOTP secret, a password link) are not kept.
NO_STORE = {"Cache-Control": "no-store"}
# The SSH keys page (its own blueprint).
KEYS_PATH = "/account/keys"
LINK_GONE = "This link is unknown, expired or already used: ask an administrator for a new one."


def account_url() -> str:
    return url_for("account.index")


def totp_url() -> str:
    return url_for("account.totp")


def password_link_url(token: str) -> str:
    """The full address of a password link (reset or invitation) to hand to its user."""
    return config().server.public_url.rstrip("/") + url_for("account.password_link",
                                                            token=token)


def _min_length() -> int:
    return config().accounts.password_min_length


def _totp_required(user: dict) -> bool:
    return bool(user["is_admin"] and config().accounts.require_totp_for_admins)


def _issuer() -> str:
    host = urlsplit(config().server.public_url).hostname or "appliance"
    return f"Odoo appliance ({host})"


def account_page(created: str | None = None):
    user = current_user()
    with db().transaction() as conn:
        tokens = store_users.list_tokens(conn, user["id"])
        second_step = totp_store.status(conn, user["id"])
    default_days = config().accounts.token_default_days
    choices = sorted(set(EXPIRY_CHOICES) | ({default_days} if default_days else set()))
    page = render_template(
        "account.html", user=user, tokens=tokens, created=created, scopes=store_users.SCOPES,
        second_step=second_step, totp_required=_totp_required(user),
        expiry_choices=choices, default_expiry=str(default_days) if default_days else "never",
        min_length=_min_length(), keys_path=KEYS_PATH, form=refused_form())
    return make_response(page, 200, NO_STORE if created else {})


@blueprint.get("/account")
@guard.signed_in
def index():
    return account_page()


# Password

@blueprint.post("/account/password")
@guard.signed_in
@refusals_back_to(account_url)
def change_password():
    """A new password, given the current one: every other session of the user ends,
    this one goes on."""
    user = current_user()
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        raise UserError("The new password and its confirmation differ.")
    passwords.check(new, user["name"], _min_length())
    current = request.form.get("current_password", "")
    auth.throttled_check(user["name"], lambda conn: store_users.password_matches(user, current),
                         "The current password is wrong.")
    with db().transaction() as conn:
        session["generation"] = store_users.set_password(conn, user["name"], new, _min_length())
        g.user = store_users.get_user(conn, user["id"])
    log.info("user %s changed their password from %s; their other sessions ended",
             user["name"], auth.client_address())
    flash("Password changed. You are still signed in here; every other session has ended.")
    return redirect(account_url(), 303)


# Personal access tokens

@blueprint.post("/account/tokens")
@guard.signed_in
@refusals_back_to(account_url, keep_form=True)
def create_token():
    user = current_user()
    label = request.form.get("label", "").strip()
    if not label:
        raise UserError("Give the token a name, to know it again (e.g. the laptop it is on).")
    expires = request.form.get("expires", "")
    if expires == "date":
        expires = request.form.get("expires_on", "") or "missing"
    expires_at = store_users.token_expiry(expires)
    scopes = request.form.getlist("scope")
    with db().transaction() as conn:
        token = store_users.create_token(conn, user["name"], label, scopes, expires_at)
    log.info("user %s made the token %r (%s, expires %s)", user["name"], label,
             ", ".join(scopes), expires_at or "never")
    return account_page(created=token)


@blueprint.post("/account/tokens/<int:token_id>/revoke")
@guard.signed_in
@refusals_back_to(account_url)
def revoke_token(token_id: int):
    user = current_user()
    with db().transaction() as conn:
        token = store_users.revoke_token(conn, user["id"], token_id)
    log.info("user %s revoked the token %r (#%s)", user["name"], token["label"], token_id)
    flash(f"Token {token['label'] or '#' + str(token_id)} revoked: it no longer works.")
    return redirect(account_url(), 303)


# Two-factor sign-in

@blueprint.get("/account/totp")
@guard.signed_in
def totp():
    user = current_user()
    with db().transaction() as conn:
        state = totp_store.status(conn, user["id"])
        secret = totp_store.pending_secret(conn, user["id"]) if state == "pending" else None
    uri = totp_store.provisioning_uri(secret, user["name"], _issuer()) if secret else None
    page = render_template("account_totp.html", state=state, secret=secret, uri=uri,
                           required=_totp_required(user))
    return make_response(page, 200, NO_STORE)


@blueprint.post("/account/totp")
@guard.signed_in
@refusals_back_to(totp_url)
def totp_begin():
    with db().transaction() as conn:
        totp_store.begin(conn, current_user()["id"])
    return redirect(totp_url(), 303)


@blueprint.post("/account/totp/confirm")
@guard.signed_in
@refusals_back_to(totp_url)
def totp_confirm():
    user = current_user()
    with db().transaction() as conn:
        if not totp_store.confirm(conn, user["id"], request.form.get("code", "")):
            raise UserError("That is not the app's current code: check that the device's "
                            "clock is right, and type the code shown now.")
    log.info("user %s turned two-factor sign-in on", user["name"])
    flash("Two-factor sign-in is on: each sign-in now asks for a code from your app.")
    return redirect(account_url(), 303)


@blueprint.post("/account/totp/disable")
@guard.signed_in
@refusals_back_to(account_url)
def totp_disable():
    """Turn the second step off, given a current code or the password."""
    user = current_user()
    if _totp_required(user):
        raise UserError("Appliance admins must keep two-factor sign-in on here.")
    code = request.form.get("code", "").strip()
    password = request.form.get("password", "")

    def right(conn) -> bool:
        if code:
            return totp_store.verify(conn, user["id"], code)
        return bool(password) and store_users.password_matches(user, password)
    auth.throttled_check(user["name"], right, "Wrong code or password.")
    with db().transaction() as conn:
        totp_store.disable(conn, user["id"])
    log.info("user %s turned two-factor sign-in off", user["name"])
    flash("Two-factor sign-in is off: your password alone signs you in.")
    return redirect(account_url(), 303)


# A one-time link that sets a password

def _link_url(token: str) -> str:
    return url_for("account.password_link", token=token)


@blueprint.route("/password/<token>", methods=["GET", "POST"])
@guard.public
@refusals_back_to(_link_url)
def password_link(token: str):
    with db().transaction() as conn:
        user = store_users.password_link_user(conn, token)
    if user is None:
        page = render_template("password_link.html", name=None, error=LINK_GONE, gone=True)
        return make_response(page, 410, NO_STORE)
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            raise UserError("The password and its confirmation differ.")
        with db().transaction() as conn:
            store_users.use_password_link(conn, token, new, _min_length())
        log.info("user %s set their password through a link", user["name"])
        session.clear()
        flash("Your password is set: sign in with it.")
        return redirect(url_for("auth.login"), 303)
    page = render_template("password_link.html", name=user["name"], gone=False,
                           min_length=_min_length())
    return make_response(page, 200, NO_STORE)
