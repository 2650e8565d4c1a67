"""End to end in a real browser: push a branch to a running daemon, watch it turn green."""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import expect, launch, playwright_sync, sign_in
from tests.integration.harness import Appliance, make_repo, push

pytestmark = [pytest.mark.browser, pytest.mark.docker]

# A build takes a few seconds on a warm machine; the first one may build an image.
BUILD_TIMEOUT_MS = 240_000


def test_a_pushed_branch_turns_green_in_the_browser_and_its_log_arrives(tmp_path):
    app = Appliance(tmp_path, "browser")
    try:
        app.start()
        token = app.make_user("admin")
        app.make_project("acme")
        with playwright_sync.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(app.url + "/")
            sign_in(page, "admin", "password-admin")
            page.get_by_role("link", name="acme").first.click()
            expect(page).to_have_url(re.compile(r"/projects/acme$"))

            repo = make_repo(tmp_path / "repo", "green")
            _, ids = push(repo, app.remote("acme", "admin", token), "feature-ui")
            cell = page.locator(f'a.cell[data-build="{ids[0]}"]')
            expect(cell).to_be_visible(timeout=15_000)  # appears without reloading (idle poll)
            expect(cell).to_have_class(re.compile(r"\bgreen\b"), timeout=BUILD_TIMEOUT_MS)

            cell.click()
            expect(page.locator("#build-status")).to_have_attribute("data-state", "running")
            page.goto(f"{app.url}/builds/{ids[0]}/logs/install")
            entries = page.locator("#log .log-entries .entry")
            expect(entries.first).to_be_visible(timeout=10_000)
            expect(page.locator("#log")).to_contain_text("odoo.tests.result")
            browser.close()
            assert not errors, errors
    finally:
        app.close()
