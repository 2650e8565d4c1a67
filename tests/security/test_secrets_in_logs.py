"""Secrets a URL carries stay out of the daemon's log.

A password link (`/password/<token>`, a reset or an invitation) sets the password of its
account for 3 days, and only its hash is kept. A refused form on its page (a password
the rules refuse, the commonest mistake, or a form without its CSRF token) is logged
with the request's path: the path is logged with the token left out, so whoever reads
the journal cannot take the account over with it.
"""

from __future__ import annotations

import logging

from appliance.store import users as store_users
from tests.helpers_web import csrf


def _link(db) -> str:
    with db.transaction() as conn:
        return store_users.reset_password(conn, "member")


def test_a_refused_password_on_a_password_link_logs_no_token(app, db, people, caplog):
    token = _link(db)
    client = app.test_client()
    assert client.get(f"/password/{token}").status_code == 200
    caplog.set_level(logging.DEBUG)
    refused = client.post(f"/password/{token}", data={
        "csrf_token": csrf(client), "new_password": "short", "confirm_password": "short"})
    assert refused.status_code == 303  # back to the page with the reason
    assert "refused POST /password/" in caplog.text
    assert token not in caplog.text


def test_a_password_link_s_form_without_csrf_token_logs_no_token(app, db, people, caplog):
    token = _link(db)
    caplog.set_level(logging.DEBUG)
    refused = app.test_client().post(f"/password/{token}", data={
        "new_password": "a long and fine passphrase", "confirm_password": "x"})
    assert refused.status_code == 400
    assert "CSRF token missing" in caplog.text
    assert token not in caplog.text
