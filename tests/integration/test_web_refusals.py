"""One policy for a refused form: every POST of the UI that a person's mistake or a rule
refuses comes back to the page its form is on (303) with the reason as an error flash,
and changes nothing. Flask's test client against a real state database, with the owner,
member and outsider of tests/conftest.py and a real bare repository (`work`).
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from appliance import mime
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects
from tests.client_cookies import get_cookie
from tests.helpers_web import flashes, post

# Blueprints whose POSTs are no page's form: signing in and out, git's smart HTTP, the
# upload pieces a script sends (answered in JSON), a visit to a sleeping build, the
# shell's ticket (fetched by the terminal's script, answered in JSON).
NOT_FORMS = {"auth", "git", "uploads", "proxy", "shell"}


def caught_mail(db, build: dict) -> int:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "odoo@acme.example", "c@example.com", "Hi"
    mail.set_content("Hello")
    raw = mail.as_bytes()
    row = {"project_id": build["project_id"], "build_id": build["id"],
           "mail_from": "odoo@acme.example", "rcpt_to": ["c@example.com"], "size": len(raw),
           "raw": raw, **mime.summary(raw)}
    with db.transaction() as conn:
        return store_mails.add_mails(conn, [row])[0]


def snapshot(db) -> dict:
    """What a refused form must leave as it was."""
    with db.transaction() as conn:
        def rows(query):
            return [dict(row) for row in conn.execute(query)]
        return {"branches": rows("SELECT id, name, stage, push_behaviour FROM branches ORDER BY id"),
                "builds": rows("SELECT id, state FROM builds ORDER BY id"),
                "events": rows("SELECT id FROM events"),
                "tasks": rows("SELECT id FROM tasks"),
                "project": rows("SELECT relay_host, relay_port, mail_keep_days FROM projects")}


@pytest.fixture
def refusable(db, people, work, make_build):
    """acme with a running build of `main` and a queued one of `feature/cart` (so it is
    busy), and a mail caught from the latter. Returns the ids the forms need."""
    running = make_build("main", state="running", result="success", host_port=18090)
    queued = make_build("feature/cart")
    return {"running": running["id"], "mail": caught_mail(db, queued)}


# (form's URL, its fields, the page it comes back to, the reason shown), ids filled in.
REFUSALS = [
    ("/projects/acme/branches/feature/cart/stage", {"stage": "production"},
     "/projects/acme", "acme already has a production branch (main)"),
    ("/projects/acme/branches/feature/cart/stage", {"stage": "qa"},
     "/projects/acme", "unknown stage 'qa'"),
    ("/projects/acme/branches/feature/cart/merge", {"target": ""},
     "/projects/acme", "choose the branch to merge into"),
    ("/projects/acme/branches/feature/cart/merge", {"target": "nope"},
     "/projects/acme", "no branch 'nope' in project 'acme'"),
    ("/projects/acme/branches/feature/cart/rebuild", {},
     "/projects/acme/branches/feature/cart", "feature/cart is building"),
    ("/projects/acme/branches/main/refresh", {},
     "/projects/acme/branches/main", "only a staging branch can be refreshed"),
    ("/projects/acme/branches/main/settings", {"push_behaviour": "nothing"},
     "/projects/acme/branches/main?tab=settings", "only a staging branch has a push behaviour"),
    ("/builds/{running}/start", {},
     "/builds/{running}", "only a stopped build can be started"),
    ("/projects/acme/settings", {"relay_host": "smtp.example.com", "relay_port": "99999",
                                 "relay_security": "starttls", "mail_keep_days": "30",
                                 "mail_keep_count": "1000"},
     "/projects/acme/settings", "relay port must be a number from 1 to 65535"),
    ("/mails/{mail}/release", {"address": "me@example.com"},
     "/mails/{mail}", "project acme has no outgoing relay"),
]


@pytest.mark.parametrize("path, fields, back, reason", REFUSALS,
                         ids=[f"{r[0].rsplit('/', 1)[-1]}-{r[3][:24]}" for r in REFUSALS])
def test_a_refused_form_comes_back_to_its_page_with_the_reason_and_changes_nothing(
        client_as, db, refusable, path, fields, back, reason):
    client = client_as("owner")
    before = snapshot(db)
    response = post(client, path.format(**refusable), **fields)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    assert response.headers["Location"] == back.format(**refusable)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [shown] = flashes(page)
    assert reason in shown
    assert '<p class="flash error" role="alert">' in page
    assert snapshot(db) == before


def test_every_form_of_the_ui_declares_the_page_its_refusals_go_back_to(app):
    undeclared = [rule.rule for rule in app.url_map.iter_rules()
                  if "POST" in rule.methods and rule.endpoint.split(".")[0] not in NOT_FORMS
                  and not hasattr(app.view_functions[rule.endpoint], "refusals_back_to")]
    assert undeclared == []


def session_of(app, client) -> dict:
    """The session the browser holds (a signed cookie: readable by whoever has it)."""
    cookie = get_cookie(client, "appliance_session")
    return app.session_interface.get_signing_serializer(app).loads(cookie)


def test_a_refused_settings_form_shows_what_was_typed_but_never_the_password(
        app, client_as, db, people):
    client = client_as("owner")
    response = post(client, "/projects/acme/settings", relay_host="typed.example.com",
                    relay_port="twenty", relay_security="none", relay_user="typed-user",
                    relay_password="typed-secret", mail_keep_days="30",
                    mail_keep_count="1000")
    kept = session_of(app, client)
    assert kept["refused_form"]["relay_host"] == "typed.example.com"
    assert "typed-secret" not in repr(kept) and "csrf_token" not in kept["refused_form"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert flashes(page) == ["relay port must be a whole number"]
    assert 'value="typed.example.com"' in page and 'value="twenty"' in page
    assert 'value="typed-user"' in page and "typed-secret" not in page
    # Shown once: the next visit shows what is stored.
    again = client.get("/projects/acme/settings").get_data(as_text=True)
    assert "typed.example.com" not in again and flashes(again) == []
    with db.transaction() as conn:
        assert store_projects.get_project(conn, "acme")["relay_host"] == ""


def test_refusals_outside_a_pages_form_keep_their_status(client_as, people, work):
    member, outsider = client_as("member"), client_as("outsider")
    # A member may not change the project's settings: 403, not a flash.
    assert post(member, "/projects/acme/settings", relay_port="25").status_code == 403
    # What an outsider may not see stays a 404.
    response = post(outsider, "/projects/acme/branches/feature/cart/stage", stage="staging")
    assert response.status_code == 404
    # The API answers a refusal with the reason in JSON.
    response = member.get("/api/projects/acme/builds?before=soon")
    assert response.status_code == 400
    assert response.get_json() == {"error": "before must be a whole number from 1 to 2147483647"}
