"""Moving and merging branches by drag and drop on the project page, in a real browser.

The project's bare repository receives real commits (the `work` fixture); the page, its
script and the server do the rest.
"""

from __future__ import annotations

import re

import pytest

from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from tests.browser.helpers import LIVE_TIMEOUT_MS, branch, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def dialogs(page):
    """Every confirm() is accepted; its messages are kept."""
    messages = []

    def accept(dialog):
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def stage_title(page, stage: str):
    return page.locator(f'#stage-{stage} h2[data-drop-stage="{stage}"]')


def test_dragging_a_branch_onto_staging_moves_it(page, base_url, work):
    page.goto(f"{base_url}/projects/acme")
    branch(page, "feature").drag_to(stage_title(page, "staging"))
    expect(page.locator(".flash")).to_have_text("Moved feature to staging.")
    expect(page.locator('#stage-staging .branch[data-branch="feature"]')).to_be_visible()
    expect(page.locator('#stage-development .branch[data-branch="feature"]')).to_have_count(0)


def test_dragging_onto_production_while_one_exists_is_refused(page, base_url, work, db):
    page.goto(f"{base_url}/projects/acme")
    branch(page, "feature").drag_to(stage_title(page, "production"))
    expect(page.locator(".flash.error")).to_contain_text(
        "acme already has a production branch (main)")
    expect(page.locator('#stage-development .branch[data-branch="feature"]')).to_be_visible()
    expect(page.locator("#stage-production .branch")).to_have_count(1)
    with db.transaction() as conn:
        project = store_projects.get_project(conn, "acme")
        assert store_projects.get_branch(conn, project, "feature")["stage"] == "development"


def test_dragging_onto_a_branch_that_conflicts_names_the_file(page, base_url, work, dialogs):
    work.commit("Cheaper", {"shop/models.py": "price = 2\n"}, branch="main")
    work.commit("Dearer", {"shop/models.py": "price = 3\n"}, branch="feature")
    main_head = work.head("main")
    page.goto(f"{base_url}/projects/acme")
    branch(page, "feature").drag_to(branch(page, "main"))
    expect(page.locator(".flash.error")).to_contain_text("conflicts in shop/models.py")
    assert dialogs == ["Merge feature into main?"]
    assert work.head("main") == main_head


def test_a_clean_merge_by_drag_adds_a_build_to_the_target(page, base_url, work, db, dialogs):
    page.goto(f"{base_url}/projects/acme")
    cells = branch(page, "main").locator("a.cell")
    expect(cells).to_have_count(1)  # the queued `build`
    branch(page, "feature").drag_to(branch(page, "main"))
    expect(page.locator(".flash")).to_contain_text("Merged feature into main (fast-forward)")
    assert dialogs == ["Merge feature into main?"]
    expect(cells).to_have_count(2)
    with db.transaction() as conn:
        newest = conn.execute("SELECT max(id) AS id FROM builds").fetchone()["id"]
        assert store_builds.get_build(conn, newest)["trigger"] == "merge"
    expect(cells.first).to_have_attribute("data-build", str(newest))
    assert work.head("main") == work.head("feature")


def test_a_refused_merge_confirmation_changes_nothing(page, base_url, work, db):
    page.on("dialog", lambda dialog: dialog.dismiss())
    main_head = work.head("main")
    page.goto(f"{base_url}/projects/acme")
    branch(page, "feature").drag_to(branch(page, "main"))
    page.wait_for_timeout(500)
    expect(page.locator(".flash")).to_have_count(0)
    assert work.head("main") == main_head


def test_the_actions_menu_moves_without_dragging_and_survives_the_refresh(page, base_url, work):
    page.goto(f"{base_url}/projects/acme")
    menu = branch(page, "feature").locator("details.branch-menu")
    menu.locator("summary").click()
    page.wait_for_timeout(2500)  # a refresh of the list would have closed it
    expect(menu).to_have_attribute("open", "")
    menu.get_by_role("button", name="Move to staging").click()
    expect(page.locator(".flash")).to_have_text("Moved feature to staging.")
    expect(page.locator('#stage-staging .branch[data-branch="feature"]')).to_be_visible()


def test_the_branch_page_rebuilds_and_disables_the_button(page, base_url, work, db):
    page.goto(f"{base_url}/projects/acme")
    branch(page, "feature").locator("a.branch-name").click()
    expect(page).to_have_url(re.compile(r"/projects/acme/branches/feature$"))
    page.get_by_role("button", name="Rebuild").click()
    expect(page.locator(".flash")).to_contain_text("Rebuild: build #")
    expect(page.get_by_role("button", name="Rebuild")).to_be_disabled()
    with db.transaction() as conn:
        newest = conn.execute("SELECT max(id) AS id FROM builds").fetchone()["id"]
        store_builds.set_state(conn, newest, "running", result="success", host_port=18069)
    expect(page.get_by_role("button", name="Rebuild")).to_be_enabled(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(f'#branch-status a.cell[data-build="{newest}"]')).to_have_class(
        re.compile(r"\bgreen\b"))
