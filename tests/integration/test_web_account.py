"""The account page against the real state database: tokens made and revoked by their
owner, the password changed, two-factor sign-in set up and asked, admins made to set it
up, disabled users locked out everywhere, and links that set a password once.

The people are those of tests/conftest.py (owner, member, outsider, admin), all with
PASSWORD; pyotp computes the codes an authenticator app would show.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pyotp
import pytest

from appliance.errors import UserError
from appliance.store import users as store_users
from appliance.web import build_access
from tests.helpers_web import PASSWORD, flashes, login, post

NEW_PASSWORD = "seven purple lanterns"


def token_rows(db, name: str = "member") -> list[dict]:
    with db.transaction() as conn:
        user = store_users.user_by_name(conn, name)
        return store_users.list_tokens(conn, user["id"])


def signed_in(client) -> bool:
    response = client.get("/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


def fresh_client(app, name: str = "member", password: str = PASSWORD):
    client = app.test_client()
    assert login(client, name, password).status_code == 302
    return client


# Tokens

def test_the_account_page_shows_the_tokens_and_links_to_the_ssh_keys(client_as, db):
    with db.transaction() as conn:
        store_users.create_token(conn, "member", "laptop", ["git_read"])
        store_users.create_token(conn, "owner", "someone else's")
    page = client_as("member").get("/account").get_data(as_text=True)
    assert "laptop" in page and "git read" in page and "someone else" not in page
    assert 'href="/account/keys"' in page
    assert 'href="/account"' in page  # the top bar's link


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(client_as, db):
    client = client_as("member")
    response = post(client, "/account/tokens", label="laptop", scope=["git_read", "git_write"],
                    expires="30")
    page = response.get_data(as_text=True)
    token = re.search(r'value="(appl_[^"]+)"', page).group(1)
    assert response.headers["Cache-Control"] == "no-store"
    assert token not in client.get("/account").get_data(as_text=True)
    [row] = token_rows(db)
    assert row["label"] == "laptop" and row["scopes"] == ["git_read", "git_write"]
    assert dt.timedelta(days=29) < row["expires_at"] - row["created_at"] <= dt.timedelta(days=30)
    with db.transaction() as conn:
        stored = conn.execute("SELECT * FROM tokens").fetchone()
        assert token not in str(stored.values())
        assert store_users.user_by_token(conn, "member", token, "git_write")["name"] == "member"


def test_a_token_expiring_on_a_date_works_to_the_end_of_that_day(client_as, db):
    day = dt.date.today() + dt.timedelta(days=10)
    post(client_as("member"), "/account/tokens", label="ci", scope="api", expires="date",
         expires_on=day.isoformat())
    [row] = token_rows(db)
    assert row["expires_at"] == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(),
                                                    dt.timezone.utc)


@pytest.mark.parametrize("form, reason", [
    ({"label": "", "scope": "api", "expires": "30"}, "Give the token a name"),
    ({"label": "x", "expires": "30"}, "at least one scope"),
    ({"label": "x", "scope": "root", "expires": "30"}, "at least one scope"),
    ({"label": "x", "scope": "api", "expires": "date", "expires_on": "2001-01-01"}, "is over"),
])
def test_a_token_form_missing_a_name_a_scope_or_a_future_expiry_makes_nothing(client_as, db,
                                                                              form, reason):
    client = client_as("member")
    response = post(client, "/account/tokens", **form)
    assert response.status_code == 303
    assert any(reason in text for text in flashes(client.get("/account").get_data(as_text=True)))
    assert token_rows(db) == []


def test_revoking_a_token_stops_it_and_nobody_else_can_revoke_it(client_as, db):
    with db.transaction() as conn:
        token = store_users.create_token(conn, "member", "laptop")
    row_id = token_rows(db)[0]["id"]
    assert post(client_as("owner"), f"/account/tokens/{row_id}/revoke").status_code == 404
    assert token_rows(db)[0]["revoked_at"] is None
    assert post(client_as("member"), f"/account/tokens/{row_id}/revoke").status_code == 303
    assert token_rows(db)[0]["revoked_at"] is not None
    with db.transaction() as conn:
        assert store_users.user_by_token(conn, "member", token, "git_read") is None


# Password

def change(client, current=PASSWORD, new=NEW_PASSWORD, again=None):
    return post(client, "/account/password", current_password=current, new_password=new,
                confirm_password=new if again is None else again)


def test_changing_the_password_ends_every_other_session_and_keeps_this_one(app, client_as,
                                                                           people):
    here, elsewhere, bystander = client_as("member"), client_as("member"), client_as("owner")
    assert change(here).status_code == 303
    assert signed_in(here) and not signed_in(elsewhere) and signed_in(bystander)
    assert login(app.test_client(), "member", PASSWORD).status_code == 200  # the old one fails
    assert login(app.test_client(), "member", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize("current, new, again, reason", [
    ("wrong password!", NEW_PASSWORD, None, "current password is wrong"),
    (PASSWORD, NEW_PASSWORD, "something else entirely", "differ"),
    (PASSWORD, "short one", None, "at least 12 characters"),
    (PASSWORD, "member", None, "at least 12"),
    (PASSWORD, "member2024!!!", None, "your user name"),
    (PASSWORD, "Password1234!", None, "most common"),
    (PASSWORD, "abababababab", None, "different characters"),
])
def test_a_password_change_the_rules_refuse_says_why_and_changes_nothing(app, client_as, people,
                                                                        current, new, again,
                                                                        reason):
    client = client_as("member")
    assert change(client, current, new, again).status_code == 303
    assert any(reason in text for text in flashes(client.get("/account").get_data(as_text=True)))
    assert login(app.test_client(), "member", PASSWORD).status_code == 302


def test_the_minimum_length_comes_from_the_configuration(client_as, config):
    config.accounts.password_min_length = 30
    client = client_as("member")
    change(client)
    assert any("at least 30 characters" in text
               for text in flashes(client.get("/account").get_data(as_text=True)))


def test_the_page_carries_the_strength_meter_and_its_library(client_as):
    page = client_as("member").get("/account").get_data(as_text=True)
    assert "vendor/zxcvbn.js" in page and "password-meter.js" in page
    assert 'data-strength-meter="new_password-strength"' in page


# Two-factor sign-in

def set_up_totp(client) -> pyotp.TOTP:
    """Begin, read the key off the page, confirm with the app's current code."""
    assert post(client, "/account/totp").status_code == 303
    page = client.get("/account/totp").get_data(as_text=True)
    secret = re.search(r'<code class="totp-secret">([A-Z2-7]+)</code>', page).group(1)
    assert f"secret={secret}" in page  # the otpauth:// URI
    app_ = pyotp.TOTP(secret)
    assert post(client, "/account/totp/confirm", code=app_.now()).status_code == 303
    return app_


def next_code(app_: pyotp.TOTP) -> str:
    """The code of the next 30-second step (still accepted): the current one is used."""
    return app_.at(time.time() + app_.interval)


def test_totp_is_on_once_a_code_confirms_it_and_its_key_is_never_shown_again(client_as, db):
    client = client_as("member")
    assert post(client, "/account/totp").status_code == 303
    post(client, "/account/totp/confirm", code="000000")
    assert "Off (set-up begun" in client.get("/account").get_data(as_text=True)
    app_ = set_up_totp(client)
    assert "On: each sign-in asks" in client.get("/account").get_data(as_text=True)
    totp_page = client.get("/account/totp").get_data(as_text=True)
    assert app_.secret not in totp_page
    assert app_.secret not in client.get("/account").get_data(as_text=True)
    assert post(client, "/account/totp").status_code == 303  # begin again: refused
    with db.transaction() as conn:
        row = conn.execute("SELECT secret, enabled_at FROM user_totp").fetchone()
    assert row["secret"] == app_.secret and row["enabled_at"] is not None


def test_signing_in_asks_for_a_code_after_the_password(app, client_as):
    app_ = set_up_totp(client_as("member"))
    client = app.test_client()
    response = login(client, "member")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/code")
    assert not signed_in(client)
    wrong = post(client, "/login/code", code="123456")
    assert "Wrong code" in wrong.get_data(as_text=True) and not signed_in(client)
    assert post(client, "/login/code", code=next_code(app_)).status_code == 302
    assert signed_in(client)


def test_a_sign_in_code_cannot_be_used_twice(app, client_as):
    app_ = set_up_totp(client_as("member"))
    code = next_code(app_)
    first, second = app.test_client(), app.test_client()
    login(first, "member")
    login(second, "member")
    assert post(first, "/login/code", code=code).status_code == 302
    assert post(second, "/login/code", code=code).status_code == 200
    assert not signed_in(second)


def test_the_code_step_is_throttled_and_a_right_password_does_not_reset_it(app, client_as):
    app_ = set_up_totp(client_as("member"))
    client = app.test_client()
    for attempt in range(5):
        # From a new address each time: the account's count is the one that locks.
        client.environ_base["REMOTE_ADDR"] = f"192.0.2.{attempt + 1}"
        if attempt % 2 == 0:  # the password again between guesses: no fresh count
            assert login(client, "member").status_code == 302
        assert post(client, "/login/code", code=f"{attempt:06d}").status_code == 200
    client.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    response = post(client, "/login/code", code=next_code(app_))
    assert response.status_code == 429 and "Too many failed sign-ins" in response.get_data(
        as_text=True)
    assert not signed_in(client)


def test_the_code_must_follow_the_password_soon(app, client_as):
    app_ = set_up_totp(client_as("member"))
    client = app.test_client()
    login(client, "member")
    with client.session_transaction() as session:  # five minutes and a second later
        session["pending"] = {**session["pending"], "until": time.time() - 1}
    response = post(client, "/login/code", code=next_code(app_))
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


@pytest.mark.parametrize("how", ["password", "code"])
def test_totp_is_turned_off_with_the_password_or_a_code(app, client_as, db, how):
    client = client_as("member")
    app_ = set_up_totp(client)
    post(client, "/account/totp/disable", password="not my password")
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM user_totp").fetchone()["n"] == 1
    form = {"password": PASSWORD} if how == "password" else {"code": next_code(app_)}
    assert post(client, "/account/totp/disable", **form).status_code == 303
    assert login(app.test_client(), "member").status_code == 302
    assert signed_in(fresh_client(app))


def test_an_admin_required_to_use_totp_reaches_only_its_set_up_until_it_is_on(app, client_as,
                                                                            config, db):
    config.accounts.require_totp_for_admins = True
    admin = client_as("admin")
    for path in ("/", "/projects/acme", "/account"):
        response = admin.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].endswith("/account/totp"), path
    swapped = admin.get("/projects/acme", headers={"HX-Request": "true"})
    assert swapped.headers["HX-Redirect"] == "/account/totp"
    assert "must set up two-factor" in admin.get("/account/totp").get_data(as_text=True)
    with db.transaction() as conn:
        token = store_users.create_token(conn, "admin", "script", ["api"])
    api = app.test_client().get("/api/projects", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 403 and "two-factor" in api.get_json()["error"]
    assert signed_in(client_as("member"))  # not an admin: not asked
    set_up_totp(admin)
    assert signed_in(admin)
    assert post(admin, "/account/totp/disable", password=PASSWORD).status_code == 303
    with db.transaction() as conn:  # an admin may not turn it off
        assert conn.execute("SELECT count(*) AS n FROM user_totp").fetchone()["n"] == 1


# Disabled users

def test_a_disabled_user_is_locked_out_of_sessions_cookies_tokens_and_sign_in(app, client_as,
                                                                             config, db):
    client = client_as("member")
    with db.transaction() as conn:
        member = store_users.user_by_name(conn, "member")
        cookie = build_access.token_for(config, member)
        token = store_users.create_token(conn, "member", "laptop")
        link = store_users.reset_password(conn, "member")
        store_users.set_disabled(conn, "member", True)
    assert not signed_in(client)
    with db.transaction() as conn:
        assert build_access.user_from(config, conn, cookie, 3600) is None
        now = store_users.user_by_name(conn, "member")  # even a cookie made after it
        assert store_users.session_user(conn, now["id"], now["session_generation"]) is None
        assert store_users.user_by_token(conn, "member", token, "git_read") is None
    api = app.test_client().get("/api/projects", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401
    refused = login(app.test_client(), "member")
    assert refused.status_code == 200 and "disabled" in refused.get_data(as_text=True)
    assert app.test_client().get(f"/password/{link}").status_code == 410
    with db.transaction() as conn:
        store_users.set_disabled(conn, "member", False)
        assert build_access.user_from(config, conn, cookie, 3600) is None  # stays void
    assert not signed_in(client)
    assert signed_in(fresh_client(app))


def test_the_last_enabled_appliance_admin_cannot_be_disabled(db, people):
    with db.transaction() as conn:
        with pytest.raises(UserError, match="only enabled appliance admin"):
            store_users.set_disabled(conn, "admin", True)
        conn.execute("UPDATE users SET is_admin = true WHERE name = 'owner'")
        assert store_users.set_disabled(conn, "admin", True)["disabled_at"] is not None


# Links that set a password

def use_link(client, link: str, password: str = NEW_PASSWORD, again: str | None = None):
    client.get(f"/password/{link}")
    return post(client, f"/password/{link}", new_password=password,
                confirm_password=password if again is None else again)


def test_a_reset_link_sets_the_password_once_and_ends_the_sessions(app, client_as, db):
    signed = client_as("member")
    with db.transaction() as conn:
        link = store_users.reset_password(conn, "member")
        assert link not in str(conn.execute("SELECT * FROM password_links").fetchall())
    page = app.test_client().get(f"/password/{link}")
    assert page.status_code == 200 and "member" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    response = use_link(app.test_client(), link)
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    assert not signed_in(signed)
    assert login(app.test_client(), "member", PASSWORD).status_code == 200
    assert signed_in(fresh_client(app, "member", NEW_PASSWORD))
    assert app.test_client().get(f"/password/{link}").status_code == 410
    assert use_link(app.test_client(), link, "another fine passphrase").status_code == 410


def test_a_new_link_voids_the_older_one_and_an_expired_link_is_refused(app, db, people):
    with db.transaction() as conn:
        older = store_users.reset_password(conn, "member")
        newer = store_users.reset_password(conn, "member", lifetime=dt.timedelta(seconds=-1))
    assert app.test_client().get(f"/password/{older}").status_code == 410
    assert app.test_client().get(f"/password/{newer}").status_code == 410


@pytest.mark.parametrize("password, again, reason", [
    ("password123!", None, "most common"), ("member", None, "at least 12"),
    (NEW_PASSWORD, "not the same", "differ"),
])
def test_a_password_refused_through_a_link_says_why_and_leaves_the_link_usable(
        app, db, people, password, again, reason):
    with db.transaction() as conn:
        link = store_users.reset_password(conn, "member")
    client = app.test_client()
    refused = use_link(client, link, password, again)
    assert refused.status_code == 303 and refused.headers["Location"] == f"/password/{link}"
    page = client.get(refused.headers["Location"])
    assert page.status_code == 200 and any(reason in text for text in flashes(
        page.get_data(as_text=True)))
    assert use_link(client, link).status_code == 303
    assert login(app.test_client(), "member", NEW_PASSWORD).status_code == 302


def test_an_invited_user_has_no_password_until_the_link_sets_one(app, db, people):
    with db.transaction() as conn:
        store_users.create_user(conn, "newcomer", None)
        link = store_users.reset_password(conn, "newcomer")
    for guess in ("", "!", PASSWORD):
        assert login(app.test_client(), "newcomer", guess).status_code == 200
    use_link(app.test_client(), link)
    assert signed_in(fresh_client(app, "newcomer", NEW_PASSWORD))
