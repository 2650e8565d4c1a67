"""The Shell tab in a real browser against a real daemon and a real build container:
psql answers, two tabs at once, a resized window is the terminal's new size, and a
closed tab leaves no process behind in the container (as `docker top` sees it)."""

from __future__ import annotations

import subprocess
import time

import pytest

from appliance.shell import sessions
from tests.browser.helpers import expect, launch, playwright_sync, sign_in
from tests.integration.harness import Appliance, make_repo, push

pytestmark = [pytest.mark.browser, pytest.mark.docker]

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shell-ui")
    app = Appliance(folder, "shellui")
    try:
        app.start()
        token = app.make_user("admin")
        app.make_project("acme")
        repo = make_repo(folder / "repo", "green")
        _, (build_id,) = push(repo, app.remote("acme", "admin", token), "feature")
        app.build = app.wait_build(build_id, timeout=300)
        assert app.build["state"] == "running", app.build["reason"]
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


@pytest.fixture
def context(browser, app):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield context
    context.close()


def open_shell(context, app):
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    page.goto(f"{app.url}/builds/{app.build['id']}/shell")
    if "/login" in page.url:
        sign_in(page, "admin", "password-admin")
        page.goto(f"{app.url}/builds/{app.build['id']}/shell")
    expect(page.locator("#shell")).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
    screen(page).wait_for()
    expect(screen(page)).to_contain_text("acme/feature#", timeout=TIMEOUT_MS)  # the prompt
    return page


def screen(page):
    return page.locator("#shell .xterm-rows")


def run(page, command: str, answer) -> None:
    page.locator("#shell .xterm").click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")
    expect(screen(page)).to_contain_text(answer, timeout=TIMEOUT_MS)


def shells_in(app) -> int:
    """The container's terminal processes (bash started with the appliance's rc file)."""
    name = sessions.server_container(app.svc, app.build["id"]).id
    top = subprocess.run(["docker", "top", name], capture_output=True, text=True,
                         check=True).stdout
    return sum("rcfile" in line for line in top.splitlines())


def eventually(check, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


def test_psql_answers_in_the_shell_tab_and_two_tabs_work_at_once(context, app):
    first = open_shell(context, app)
    run(first, "psql -c 'select 1'", "(1 row)")
    second = open_shell(context, app)
    run(second, "echo second-$((6*7))", "second-42")
    run(first, "echo first-$((6*7))", "first-42")  # the first still answers
    assert shells_in(app) == 2
    second.close()
    first.close()
    eventually(lambda: shells_in(app) == 0)  # closing the tabs ended their shells
    assert not first.errors and not second.errors, first.errors + second.errors


def test_a_resized_window_is_the_terminal_s_new_size(context, app):
    page = open_shell(context, app)
    before = page.locator("#shell").get_attribute("data-size")
    page.set_viewport_size({"width": 700, "height": 500})
    expect(page.locator("#shell")).not_to_have_attribute("data-size", before,
                                                         timeout=TIMEOUT_MS)
    rows, cols = page.locator("#shell").get_attribute("data-size").split("x")
    run(page, "stty size", "stty size")
    # The answer is a line of its own: exactly the size the page fitted the terminal to.
    lines = page.locator("#shell .xterm-rows > div")
    eventually(lambda: f"{rows} {cols}" in [t.strip() for t in lines.all_inner_texts()])
    page.close()
    eventually(lambda: shells_in(app) == 0)
