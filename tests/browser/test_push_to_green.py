"""End to end in a real browser, without a shell on the server: an appliance admin creates
a project and invites a user; the user sets their password through the link, makes a
token on their own page (where the project's push-to-deploy box sends them), pushes with
it, and watches the build turn green and its log arrive."""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import expect, launch, playwright_sync, sign_in
from tests.integration.harness import Appliance, make_repo, push

pytestmark = [pytest.mark.browser, pytest.mark.docker]

# A build takes a few seconds on a warm machine; the first one may build an image.
BUILD_TIMEOUT_MS = 240_000
BOB_PASSWORD = "violet-kettle-harbour-42"


def test_a_project_made_in_the_browser_is_pushed_to_with_a_token_made_in_the_browser_and_turns_green(
        tmp_path):
    app = Appliance(tmp_path, "browser")
    try:
        app.start()
        app.make_user("admin", admin=True)
        with playwright_sync.sync_playwright() as p:
            browser = launch(p)
            errors = []

            # The appliance admin: a project, a user, the user as the project's developer.
            admin = browser.new_context().new_page()
            admin.on("pageerror", lambda exc: errors.append(str(exc)))
            admin.goto(app.url + "/")
            sign_in(admin, "admin", "password-admin")
            admin.goto(app.url + "/admin/projects")
            admin.fill("#project-name", "acme")
            admin.click("#create-project-submit")
            expect(admin).to_have_url(re.compile(r"/projects/acme$"))
            admin.goto(app.url + "/admin/users")
            admin.fill("#user-name", "bob")
            admin.click("#invite-user-submit")
            link = admin.locator("#password-link-url").input_value()
            admin.goto(app.url + "/projects/acme/collaborators")
            form = admin.locator("#add-collaborator")
            form.locator("input[name=user]").fill("bob")
            form.locator("select[name=role]").select_option("developer")
            form.get_by_role("button", name="Add").click()
            expect(admin.locator("#member-bob")).to_contain_text("bob")

            # bob: a password through the link, then a token from the push-to-deploy box.
            bob = browser.new_context().new_page()
            bob.on("pageerror", lambda exc: errors.append(str(exc)))
            bob.goto(link)
            bob.fill("input[name=new_password]", BOB_PASSWORD)
            bob.fill("input[name=confirm_password]", BOB_PASSWORD)
            bob.get_by_role("button", name="Set the password").click()
            if "/login" in bob.url:
                sign_in(bob, "bob", BOB_PASSWORD)
            bob.goto(app.url + "/projects/acme")
            remote = bob.locator(".connect pre.command").inner_text()
            assert f"{app.url}/git/acme.git" in remote or "/git/acme.git" in remote
            bob.locator("a.make-token").click()
            expect(bob).to_have_url(re.compile(r"/account"))
            tokens = bob.locator("#tokens form.account-form")
            tokens.locator("input[name=label]").fill("laptop")
            tokens.get_by_role("button").click()
            token = bob.locator("input.token-value").input_value()
            assert token

            bob.goto(app.url + "/projects/acme")
            repo = make_repo(tmp_path / "repo", "green")
            _, ids = push(repo, app.remote("acme", "bob", token), "feature-ui")
            cell = bob.locator(f'a.cell[data-build="{ids[0]}"]')
            expect(cell).to_be_visible(timeout=15_000)  # appears without reloading (idle poll)
            expect(cell).to_have_class(re.compile(r"\bgreen\b"), timeout=BUILD_TIMEOUT_MS)

            cell.click()
            expect(bob.locator("#build-status")).to_have_attribute("data-state", "running")
            bob.goto(f"{app.url}/builds/{ids[0]}/logs/install")
            entries = bob.locator("#log .log-entries .entry")
            expect(entries.first).to_be_visible(timeout=10_000)
            expect(bob.locator("#log")).to_contain_text("odoo.tests.result")
            browser.close()
            assert not errors, errors
    finally:
        app.close()
