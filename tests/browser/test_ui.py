"""The web UI in a real browser (Debian's Chromium): live cells and the live log viewer.

The real app runs under waitress on a free local port; builds and logs are changed
through the store and on disk, as the workers would, and the page must follow by itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance import layout
from appliance.store import builds as store_builds
from appliance.web import logstream
from tests.browser.helpers import LIVE_TIMEOUT_MS, expect

pytestmark = pytest.mark.browser


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text)


def test_build_cell_turns_green_without_reloading(page, base_url, build, db):
    page.goto(f"{base_url}/projects/acme")
    cell = page.locator(f'a.cell[data-build="{build["id"]}"]')
    expect(cell).to_have_class(re.compile(r"\bgrey\b"))
    expect(cell).to_have_attribute("title", re.compile(r"^c0ffee0 First version"))
    page.evaluate("window.notReloaded = true")

    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], "running", result="success", host_port=18069)

    expect(cell).to_have_class(re.compile(r"\bgreen\b"), timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True


def test_build_page_status_follows_the_build(page, base_url, build, db):
    page.goto(f"{base_url}/builds/{build['id']}")
    expect(page.locator("#build-status")).to_have_attribute("data-state", "queued")
    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], "running", result="warning", host_port=18069)
    expect(page.locator("#build-status")).to_have_attribute("data-state", "running",
                                                            timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_role("link", name="Connect")).to_be_visible()


def test_logs_arrive_live_grouped_and_pause_and_resume(page, base_url, build, config):
    path = layout.log_path(config, build["id"], "odoo")
    page.goto(f"{base_url}/builds/{build['id']}/logs/odoo")  # the file does not exist yet
    entries = page.locator("#log .log-entries .entry")
    expect(page.locator("#log-status")).to_have_text("Following")

    append(path, "2024-05-01 10:00:00,001 7 INFO db odoo.modules.loading: loading 1 modules\n")
    expect(entries).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    append(path, "2024-05-01 10:00:01,002 7 ERROR db odoo.addons.shop.tests: FAIL: test_total\n"
                 "Traceback (most recent call last):\n"
                 '  File "/src/user/shop/tests/test_cart.py", line 9, in test_total\n')
    append(path, "AssertionError: 1 != 2\n")
    expect(entries).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    traceback = entries.nth(1)
    expect(traceback).to_have_class(re.compile(r"\berror\b"))
    expect(traceback).to_contain_text("Traceback (most recent call last):")
    expect(traceback).to_contain_text("AssertionError: 1 != 2", timeout=LIVE_TIMEOUT_MS)

    page.click("#log-pause")
    expect(page.locator("#log-status")).to_have_text("Paused")
    append(path, "2024-05-01 10:00:02,003 7 WARNING db odoo.models: written while paused\n")
    page.wait_for_timeout(1500)
    expect(entries).to_have_count(2)

    page.click("#log-resume")
    expect(entries).to_have_count(3, timeout=LIVE_TIMEOUT_MS)
    expect(entries.nth(2)).to_have_class(re.compile(r"\bwarning\b"))
    expect(entries.nth(2)).to_contain_text("written while paused")


def test_following_stops_after_the_time_limit_and_resumes(page, base_url, build, config,
                                                          monkeypatch):
    monkeypatch.setattr(logstream, "FOLLOW_SECONDS", 1)
    path = layout.log_path(config, build["id"], "install")
    append(path, "installing\n")
    page.goto(f"{base_url}/builds/{build['id']}/logs/install")
    entries = page.locator("#log .log-entries .entry")
    expect(entries).to_have_count(1)
    status = page.locator("#log-status")
    expect(status).to_have_text("Following stopped after 5 minutes — Resume",
                                timeout=LIVE_TIMEOUT_MS)
    append(path, "installed\n")
    page.click("#log-resume")
    expect(entries).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(entries.nth(1)).to_have_text("installed")
