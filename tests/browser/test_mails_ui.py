"""Caught mail in a real browser (Debian's Chromium): hostile HTML stays inert, remote
images load only when asked, and new mail appears in the Mails tab by itself.

A tiny HTTP server on 127.0.0.1 stands for the outside world: it records every request,
so "nothing was fetched" is checked where it matters, at the receiving end.
"""

from __future__ import annotations

import base64
import re
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance import mime
from appliance.store import mails as store_mails
from tests.browser.helpers import LIVE_TIMEOUT_MS, expect, sign_in

pytestmark = pytest.mark.browser

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
# What the message's script and event handler would leave behind if they ever ran.
RAN = "SCRIPT RAN"


class Outside:
    """An HTTP server on a free loopback port that answers a PNG and records paths."""

    def __init__(self):
        self.paths: list[str] = []
        outside = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outside.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="outside",
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outside():
    with Outside() as server:
        yield server


@pytest.fixture
def feature_build(make_build):
    """A development build of acme (on `feature`), whose mail is caught."""
    return make_build("feature", commit="f" * 40, message="Send mail", author="Ada")


def add_mail(db, sender: dict, raw: bytes) -> int:
    """Store a message as the catcher does, sent by the build `sender`."""
    row = {"project_id": sender["project_id"], "build_id": sender["id"],
           "mail_from": "odoo@acme.example", "rcpt_to": ["customer@example.com"],
           "size": len(raw), "raw": raw, **mime.summary(raw)}
    with db.transaction() as conn:
        return store_mails.add_mails(conn, [row])[0]


def hostile_mail(outside_url: str, subject: str = "Hostile") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "odoo@acme.example", "c@example.com", subject
    message.set_content("Plain text")
    message.add_alternative(f"""<html><head><title>mail</title></head><body>
<p id="hello">Hello from the mail</p>
<script>document.title = "{RAN}"; console.log("{RAN}");
  fetch("{outside_url}/from-script");</script>
<img src="x" onerror="console.log('{RAN}'); fetch('{outside_url}/from-handler')">
<img id="remote" src="{outside_url}/remote.png" alt="remote">
</body></html>""", subtype="html")
    return message.as_bytes()


@pytest.fixture
def page(browser, base_url, build):
    """Signed in as `owner`; every console message and page error is kept, because a
    blocked image or script is reported on the console and is expected here."""
    context = browser.new_context()
    page = context.new_page()
    page.console_texts, page.errors = [], []
    page.on("console", lambda msg: page.console_texts.append(msg.text))
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(base_url + "/login")
    sign_in(page)
    yield page
    context.close()


def test_hostile_html_runs_no_script_and_fetches_nothing_until_remote_images_are_asked_for(
        page, base_url, db, feature_build, outside):
    mail_id = add_mail(db, feature_build, hostile_mail(outside.url))
    page.goto(f"{base_url}/mails/{mail_id}")
    frame_element = page.locator("iframe[name=mail-html]")
    assert frame_element.get_attribute("sandbox") == ""
    frame = page.frame_locator("iframe[name=mail-html]")
    expect(frame.locator("#hello")).to_have_text("Hello from the mail")
    page.wait_for_timeout(1000)  # time for a script, a handler or an image to act

    assert outside.paths == []
    assert not any(RAN in text for text in page.console_texts), page.console_texts
    assert page.errors == []
    assert RAN not in page.title()
    mail_frame = next(f for f in page.frames if f.url.endswith(f"/mails/{mail_id}/html"))
    assert mail_frame.evaluate("document.title") == "mail"

    page.click("#load-remote")
    expect(frame.locator("#remote")).to_have_js_property("naturalWidth", 1,
                                                         timeout=LIVE_TIMEOUT_MS)
    assert "/remote.png" in outside.paths
    page.wait_for_timeout(500)
    assert not any(p.startswith(("/from-script", "/from-handler")) for p in outside.paths)
    assert not any(RAN in text for text in page.console_texts), page.console_texts
    assert page.errors == []
    remote_frame = next(f for f in page.frames if "remote=1" in f.url)
    assert remote_frame.evaluate("document.title") == "mail"


def test_new_mail_appears_in_the_mails_tab_without_reloading(page, base_url, db,
                                                             feature_build, outside):
    add_mail(db, feature_build, hostile_mail(outside.url, "First mail"))
    page.goto(f"{base_url}/projects/acme/branches/feature?tab=mails")
    rows = page.locator("#mail-list tr.mail")
    expect(rows).to_have_count(1)
    page.evaluate("window.notReloaded = true")

    add_mail(db, feature_build, hostile_mail(outside.url, "Second mail"))

    expect(rows).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(rows.first.locator(".subject")).to_contain_text("Second mail")
    assert page.evaluate("window.notReloaded") is True
    assert page.errors == [] and outside.paths == []
    assert not [t for t in page.console_texts if re.search(r"error|refused", t, re.I)]
