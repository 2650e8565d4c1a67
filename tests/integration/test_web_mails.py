"""Caught mail in the web UI, and the project's mail settings, through Flask's test client
against a real state database. Messages are real MIME built with the email package and
stored as the catcher stores them. Permissions: owner, member, outsider.
"""

from __future__ import annotations

import base64
import html
import re
from email.message import EmailMessage

import pytest

from appliance import mime
from appliance.errors import UserError
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.web import mails as web_mails
from tests.helpers_web import csrf

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def message(subject="Your invoice", sender="Odoo <odoo@acme.example>",
            to="Customer <customer@example.com>", text="Hello", html_body=None,
            attachments=()) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail["Date"] = "Wed, 01 May 2024 10:00:00 +0000"
    mail.set_content(text)
    if html_body is not None:
        mail.add_alternative(html_body, subtype="html")
    for data, maintype, subtype, filename in attachments:
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes()


@pytest.fixture
def add_mail(db):
    """Store messages of a build as the catcher does; returns their ids."""
    def add(build: dict, *raws: bytes, mail_from="odoo@acme.example",
            rcpt_to=("customer@example.com",)) -> list[int]:
        rows = [{"project_id": build["project_id"], "build_id": build["id"],
                 "mail_from": mail_from, "rcpt_to": list(rcpt_to), "size": len(raw),
                 "raw": raw, **mime.summary(raw)} for raw in raws]
        with db.transaction() as conn:
            return store_mails.add_mails(conn, rows)
    return add


def mail_rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="mail" data-mail="(\d+)"', page)]


def tab(client, branch="feature", **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return client.get(f"/projects/acme/branches/{branch}?tab=mails&{query}")


# The Mails tab

def test_mails_tab_lists_the_branch_mail_newest_first(client_as, make_build, add_mail):
    build = make_build("feature")
    other_branch = make_build("feature-2")
    first, second = add_mail(build, message("First & <one>"), message("Second"))
    add_mail(other_branch, message("Not on this branch"))
    page = tab(client_as("member")).get_data(as_text=True)
    assert mail_rows(page) == [second, first]
    assert "First &amp; &lt;one&gt;" in page and "Not on this branch" not in page
    assert f'href="/builds/{build["id"]}">#{build["id"]}</a>' in page
    assert "Odoo &lt;odoo@acme.example&gt;" in page and "customer@example.com" in page
    assert f'href="/mails/{second}"' in page
    assert 'hx-trigger="every 2s"' in page  # page 1 follows new mail


def test_mails_tab_pages_fifty_at_a_time_and_only_page_one_polls(client_as, make_build,
                                                                   add_mail):
    build = make_build("feature")
    ids = add_mail(build, *[message(f"Mail {n}") for n in range(120)])
    client = client_as("owner")
    first = tab(client).get_data(as_text=True)
    assert mail_rows(first) == ids[::-1][:50]
    assert "page 1 of 3" in first
    assert re.search(r'href="[^"]*\bpage=2\b[^"]*" rel="next"', first)
    last = tab(client, page=3).get_data(as_text=True)
    assert mail_rows(last) == ids[::-1][100:]
    assert 'hx-trigger' not in last and 'rel="prev"' in last and 'rel="next"' not in last


def test_search_matches_sender_recipient_or_subject(client_as, make_build, add_mail):
    build = make_build("feature")
    invoice, = add_mail(build, message("Invoice 42"))
    welcome, = add_mail(build, message("Welcome", sender="hr@acme.example", to="zoe@example.org"),
                        mail_from="hr@acme.example", rcpt_to=["zoe@example.org"])
    client = client_as("member")
    assert mail_rows(tab(client, q="invoice").get_data(as_text=True)) == [invoice]
    assert mail_rows(tab(client, q="hr@acme").get_data(as_text=True)) == [welcome]
    assert mail_rows(tab(client, q="zoe%40example.org").get_data(as_text=True)) == [welcome]
    page = tab(client, q="nothing-like-it").get_data(as_text=True)
    assert mail_rows(page) == [] and "No caught mail matches" in page
    assert 'value="nothing-like-it"' in page  # the search box keeps it: a shareable URL


def test_build_filter_shows_one_build_and_the_build_page_links_to_it(client_as, make_build,
                                                                     add_mail):
    old = make_build("feature")
    new = make_build("feature")
    old_mail, = add_mail(old, message("From the old build"))
    add_mail(new, message("From the new build"))
    client = client_as("member")
    page = tab(client, build=old["id"]).get_data(as_text=True)
    assert mail_rows(page) == [old_mail] and f"Showing build #{old['id']} only" in page
    build_page = client.get(f"/builds/{old['id']}").get_data(as_text=True)
    assert f'href="/projects/acme/branches/feature?tab=mails&amp;build={old["id"]}"' in build_page


def test_polling_answers_204_until_a_new_mail_arrives(client_as, make_build, add_mail):
    build = make_build("feature")
    newest, = add_mail(build, message("One"))
    client = client_as("member")
    htmx = {"HX-Request": "true"}
    url = f"/projects/acme/branches/feature?tab=mails&since={newest}"
    assert client.get(url, headers=htmx).status_code == 204
    added, = add_mail(build, message("Two"))
    response = client.get(url, headers=htmx)
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="mail-list"')
    assert mail_rows(fragment) == [added, newest] and f"since={added}" in fragment


def test_production_branch_explains_that_its_mail_is_sent_for_real(client_as, make_build,
                                                                   add_mail):
    make_build("main")
    page = tab(client_as("owner"), branch="main").get_data(as_text=True)
    assert "Production sends real mail" in page
    assert 'href="/projects/acme/settings"' in page and "hx-trigger" not in page


# One message

def test_message_page_shows_envelope_headers_and_frames_the_html_in_a_sandbox(
        client_as, make_build, add_mail):
    build = make_build("feature")
    mail_id, = add_mail(build, message("Hello", html_body="<p>Hi <b>there</b></p>"),
                        rcpt_to=["a@example.com", "b@example.com"])
    client = client_as("member")
    page = client.get(f"/mails/{mail_id}").get_data(as_text=True)
    assert "<code>a@example.com</code>, <code>b@example.com</code>" in page
    assert "<code>odoo@acme.example</code>" in page
    frame = re.search(r"<iframe[^>]*>", page).group(0)
    assert 'sandbox=""' in frame and "allow-" not in frame
    assert f'src="/mails/{mail_id}/html"' in frame and 'referrerpolicy="no-referrer"' in frame
    assert "<b>there</b>" not in page  # the HTML itself never enters the page
    assert f'href="/mails/{mail_id}/html?remote=1" target="mail-html"' in page
    text = client.get(f"/mails/{mail_id}?view=text").get_data(as_text=True)
    assert '<pre class="mail-text">Hello' in text
    headers = client.get(f"/mails/{mail_id}?view=headers").get_data(as_text=True)
    assert "<th scope=\"row\">Subject</th><td>Hello</td>" in headers


def test_html_is_served_with_its_own_sandboxing_headers(client_as, make_build, add_mail):
    build = make_build("feature")
    mail_id, = add_mail(build, message(html_body='<p>Hi</p><img src="https://x.example/a.png">'))
    client = client_as("member")
    response = client.get(f"/mails/{mail_id}/html")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy
    assert "img-src data:;" in policy and "script-src" not in policy
    assert "frame-ancestors 'self'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert '<img src="https://x.example/a.png">' in response.get_data(as_text=True)
    remote = client.get(f"/mails/{mail_id}/html?remote=1").headers["Content-Security-Policy"]
    assert "img-src data: https: http:;" in remote
    assert remote.startswith("sandbox;") and "default-src 'none'" in remote
    # Other pages keep the app's own headers.
    assert client.get(f"/mails/{mail_id}").headers["X-Frame-Options"] == "DENY"


def test_html_of_a_message_without_html_is_404(client_as, make_build, add_mail):
    mail_id, = add_mail(make_build("feature"), message())
    assert client_as("member").get(f"/mails/{mail_id}/html").status_code == 404


def test_attachment_downloads_as_octet_stream_under_a_safe_name(client_as, make_build,
                                                                add_mail):
    html_attachment = b"<script>alert(1)</script>"
    raw = message(attachments=[(html_attachment, "text", "html", "placeholder.html"),
                               (PNG, "image", "png", "logo.png")])
    raw = raw.replace(b"placeholder.html", b"../..\\evil\x07.html")
    mail_id, = add_mail(make_build("feature"), raw)
    client = client_as("member")
    page = client.get(f"/mails/{mail_id}?view=attachments").get_data(as_text=True)
    assert f'href="/mails/{mail_id}/attachments/1" download>logo.png</a>' in page
    response = client.get(f"/mails/{mail_id}/attachments/0")
    assert response.status_code == 200 and response.data == html_attachment
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "/" not in disposition
    assert "\\" not in disposition and "\x07" not in disposition and "evil_.html" in disposition
    assert client.get(f"/mails/{mail_id}/attachments/1").data == PNG
    assert client.get(f"/mails/{mail_id}/attachments/2").status_code == 404


def test_raw_download_is_the_stored_bytes(client_as, make_build, add_mail):
    raw = message("Raw", html_body="<p>x</p>", attachments=[(PNG, "image", "png", "a.png")])
    mail_id, = add_mail(make_build("feature"), raw)
    response = client_as("member").get(f"/mails/{mail_id}/raw")
    assert response.data == raw
    assert response.headers["Content-Type"] == "message/rfc822"
    assert response.headers["Content-Disposition"] == f"attachment; filename=mail-{mail_id}.eml"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_malformed_mail_is_shown_raw_and_labelled(client_as, make_build, add_mail):
    raw = b"\x00\xffnot a header block <script>alert(1)</script>\n\nbody"
    mail_id, = add_mail(make_build("feature"), raw)
    client = client_as("member")
    listing = tab(client).get_data(as_text=True)
    assert '<span class="badge red">malformed</span>' in listing
    page = client.get(f"/mails/{mail_id}").get_data(as_text=True)
    assert "not valid MIME: shown raw" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "<iframe" not in page and "?view=html" not in page
    assert client.get(f"/mails/{mail_id}/html").status_code == 404


def test_outsider_gets_404_for_another_projects_mail(client_as, make_build, add_mail, db):
    mail_id, = add_mail(make_build("feature"), message("Secret plans", html_body="<p>x</p>",
                                                       attachments=[(PNG, "image", "png", "a.png")]))
    client = client_as("outsider")
    for path in (f"/mails/{mail_id}", f"/mails/{mail_id}/html", f"/mails/{mail_id}/raw",
                 f"/mails/{mail_id}/attachments/0", f"/api/mails/{mail_id}",
                 "/projects/acme/branches/feature?tab=mails", "/api/projects/acme/mails"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"Secret plans" not in response.data
    # A mail that does not exist answers the same.
    assert client.get(f"/mails/{mail_id}").data == client.get("/mails/999999").data
    response = client.post(f"/mails/{mail_id}/release",
                           data={"address": "me@example.com", "csrf_token": csrf(client)})
    assert response.status_code == 404


def test_json_twins_list_and_describe_mail_without_the_raw_bytes(client_as, make_build,
                                                                  add_mail):
    mail_id, = add_mail(make_build("feature"), message("Json", attachments=[(PNG, "image", "png",
                                                                             "a.png")]))
    client = client_as("member")
    listed = client.get("/api/projects/acme/mails?branch=feature").get_json()
    assert [m["id"] for m in listed] == [mail_id] and listed[0]["subject"] == "Json"
    one = client.get(f"/api/mails/{mail_id}").get_json()
    assert one["attachments"][0]["filename"] == "a.png" and "raw" in one
    assert one["raw"] == f"/mails/{mail_id}/raw"


# Releasing a mail

def test_release_needs_the_csrf_token(client_as, make_build, add_mail, monkeypatch):
    mail_id, = add_mail(make_build("feature"), message())
    calls = []
    monkeypatch.setattr(web_mails.mail_jobs, "release", lambda *args: calls.append(args))
    response = client_as("member").post(f"/mails/{mail_id}/release",
                                        data={"address": "me@example.com"})
    assert response.status_code == 400 and calls == []


def test_release_sends_through_the_mail_job_and_says_so(client_as, make_build, add_mail,
                                                       monkeypatch):
    mail_id, = add_mail(make_build("feature"), message())
    calls = []
    monkeypatch.setattr(web_mails.mail_jobs, "release",
                        lambda svc, mid, address, user: calls.append((mid, address, user["name"])))
    client = client_as("member")
    response = client.post(f"/mails/{mail_id}/release",
                           data={"address": " me@example.com ", "csrf_token": csrf(client)})
    assert response.status_code == 303 and response.headers["Location"] == f"/mails/{mail_id}"
    assert calls == [(mail_id, "me@example.com", "member")]
    assert f"Mail #{mail_id} sent to me@example.com." in client.get(f"/mails/{mail_id}").get_data(
        as_text=True)


def test_release_refusal_is_shown_on_the_message_page(client_as, make_build, add_mail,
                                                      monkeypatch):
    mail_id, = add_mail(make_build("feature"), message())

    def refuse(*_args):
        raise UserError("project acme has no outgoing relay: set one first")
    monkeypatch.setattr(web_mails.mail_jobs, "release", refuse)
    client = client_as("member")
    response = client.post(f"/mails/{mail_id}/release", follow_redirects=True,
                           data={"address": "me@example.com", "csrf_token": csrf(client)})
    assert "project acme has no outgoing relay" in response.get_data(as_text=True)


# The project's mail settings

SETTINGS = {"relay_host": "smtp.example.com", "relay_port": "2525", "relay_security": "starttls",
            "relay_user": "relay-user", "relay_password": "", "mail_keep_days": "7",
            "mail_keep_count": "500"}


def save(client, **changes):
    return client.post("/projects/acme/settings",
                       data={**SETTINGS, **changes, "csrf_token": csrf(client)})


def stored(db) -> dict:
    with db.transaction() as conn:
        return store_projects.get_project(conn, "acme")


def test_owner_sets_the_relay_and_the_password_never_shows(client_as, db):
    client = client_as("owner")
    response = save(client, relay_password="s3cret-relay-pw")
    assert response.status_code == 303
    project = stored(db)
    assert (project["relay_host"], project["relay_port"], project["relay_user"]) == \
        ("smtp.example.com", 2525, "relay-user")
    assert project["relay_password"] == "s3cret-relay-pw"
    assert (project["mail_keep_days"], project["mail_keep_count"]) == (7, 500)
    page = client.get("/projects/acme/settings").get_data(as_text=True)
    assert "s3cret-relay-pw" not in page and "A password is set." in page
    assert "next deploy or restart" in page
    assert 'value="smtp.example.com"' in page
    for path in ("/api/projects", "/api/projects/acme/branches", "/projects/acme"):
        assert b"s3cret-relay-pw" not in client.get(path).data


def test_an_empty_password_keeps_the_stored_one_and_the_checkbox_clears_it(client_as, db):
    client = client_as("owner")
    save(client, relay_password="first-password")
    save(client, relay_host="relay.example.org", relay_password="")
    project = stored(db)
    assert project["relay_host"] == "relay.example.org"
    assert project["relay_password"] == "first-password"
    save(client, clear_password="1")
    assert stored(db)["relay_password"] == ""
    assert "No password is set." in client.get("/projects/acme/settings").get_data(as_text=True)


def test_a_member_sees_the_settings_without_the_password_and_may_not_change_them(
        client_as, db):
    save(client_as("owner"), relay_password="owners-secret")
    client = client_as("member")
    page = client.get("/projects/acme/settings").get_data(as_text=True)
    assert "owners-secret" not in page and "A password is set." in page
    assert "Only the project's administrators" in page and "<fieldset class=\"card\" disabled>" in page
    response = save(client, relay_host="evil.example.com")
    assert response.status_code == 403
    assert stored(db)["relay_host"] == "smtp.example.com"


def test_an_appliance_admin_may_change_any_projects_settings(client_as, db):
    assert save(client_as("admin"), relay_host="10.0.0.25").status_code == 303
    assert stored(db)["relay_host"] == "10.0.0.25"


def test_outsider_gets_404_on_the_settings(client_as, db):
    client = client_as("outsider")
    assert client.get("/projects/acme/settings").status_code == 404
    assert save(client).status_code == 404


@pytest.mark.parametrize("changes, error", [
    ({"relay_port": "70000"}, "relay port must be a number from 1 to 65535"),
    ({"relay_port": "0"}, "relay port must be a number from 1 to 65535"),
    ({"relay_port": "twenty"}, "relay port must be a whole number"),
    ({"relay_host": "smtp://smtp.example.com"}, "is not a host name or an IP address"),
    ({"relay_host": "smtp.example.com 25"}, "is not a host name or an IP address"),
    ({"relay_security": "ssl"}, "relay security must be one of none, starttls"),
    ({"mail_keep_days": "0"}, "caught mail is kept for 1 to 3,650 days"),
    ({"mail_keep_days": "99999999"}, "caught mail is kept for 1 to 3,650 days"),
    ({"mail_keep_count": "-5"}, "must be a whole number"),
])
def test_bad_settings_are_refused_with_a_clear_error_and_nothing_changes(client_as, db,
                                                                         changes, error):
    client = client_as("owner")
    before = stored(db)
    response = save(client, relay_password="typed-secret", **changes)
    assert response.status_code == 303 and response.headers["Location"] == "/projects/acme/settings"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert html.escape(error) in page and 'class="flash error"' in page
    assert "typed-secret" not in page
    assert stored(db) == before


def test_member_role_is_read_from_the_membership(db, people):
    with db.transaction() as conn:
        project = people["project"]
        assert store_projects.member_role(conn, project, people["owner"]) == "admin"
        assert store_projects.member_role(conn, project, people["member"]) == "developer"
        assert store_projects.member_role(conn, project, people["outsider"]) is None
        store_users.add_member(conn, project["id"], people["member"]["id"], "admin")
        assert store_projects.member_role(conn, project, people["member"]) == "admin"
