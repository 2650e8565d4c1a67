"""The project page's list in a real browser: its conditional poll and the shared list of
merge targets of its Actions menus."""

from __future__ import annotations

import re

import pytest

from appliance.store import builds as store_builds
from tests.browser.helpers import LIVE_TIMEOUT_MS, branch, expect

pytestmark = pytest.mark.browser

# Two polls of htmx's 2 s and some slack.
TWO_POLLS_MS = 4500


def test_the_list_polls_with_its_etag_swaps_nothing_unchanged_and_slows_when_idle(
        page, base_url, build, db):
    polls = []
    page.on("response", lambda response: polls.append(response.status)
            if response.request.headers.get("hx-request") else None)
    page.goto(f"{base_url}/projects/acme")
    page.evaluate("document.getElementById('branches').dataset.marker = 'first'")
    page.wait_for_timeout(TWO_POLLS_MS)
    assert len(polls) >= 2 and set(polls) == {204}, polls
    expect(page.locator("#branches")).to_have_attribute("data-marker", "first")  # not swapped

    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], "running", result="success", host_port=18069)
    cell = page.locator(f'a.cell[data-build="{build["id"]}"]')
    expect(cell).to_have_class(re.compile(r"\bgreen\b"), timeout=LIVE_TIMEOUT_MS)
    assert polls[-1] == 200
    expect(page.locator("#branches")).to_have_attribute("hx-trigger", "every 5s")
    seen = len(polls)
    page.wait_for_timeout(TWO_POLLS_MS)
    assert len(polls) == seen, polls  # nothing in progress: no poll within two busy ones


def test_the_actions_menu_merges_into_a_branch_picked_from_the_shared_list(
        page, base_url, work):
    page.goto(f"{base_url}/projects/acme")
    menu = branch(page, "feature").locator("details.branch-menu")
    menu.locator("summary").click()
    target = menu.get_by_label("Merge into")
    expect(target).to_have_attribute("list", "merge-targets")
    expect(page.locator("#merge-targets option")).to_have_count(2)
    target.fill("main")
    menu.get_by_role("button", name="Merge").click()
    expect(page.locator(".flash")).to_contain_text("Merged feature into main (fast-forward)")
    assert work.head("main") == work.head("feature")


def test_the_actions_menu_needs_a_target_before_it_merges(page, base_url, work):
    main_head = work.head("main")
    page.goto(f"{base_url}/projects/acme")
    menu = branch(page, "feature").locator("details.branch-menu")
    menu.locator("summary").click()
    menu.get_by_role("button", name="Merge").click()  # the browser asks for the field
    page.wait_for_timeout(500)
    expect(page.locator(".flash")).to_have_count(0)
    assert work.head("main") == main_head
    menu.get_by_role("button", name="Move to staging").click()  # moves need no target
    expect(page.locator(".flash")).to_have_text("Moved feature to staging.")
