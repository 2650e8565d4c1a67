"""Fixtures of the browser tests: one Chromium per module, the real app under waitress on
a free local port, the project `acme` with a queued build, a page signed in as `owner`.

The people (owner, member, outsider, admin) and `make_build` are those of
tests/conftest.py. Playwright is imported when a fixture first runs (through
tests/browser/helpers.py), so that where it or Chromium is missing the browser tests are
skipped rather than this file failing to load.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from appliance.web.app import create_app
from tests.helpers_web import Work

HTMX = Path(__file__).resolve().parents[2] / "appliance" / "web" / "static" / "vendor" / "htmx.min.js"


@pytest.fixture(scope="module")
def browser():
    from tests.browser.helpers import launch, playwright_sync
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


@pytest.fixture
def base_url(config, db):
    from waitress import create_server

    if not HTMX.exists():
        pytest.skip("htmx is not in static/vendor: run scripts/copy-assets.sh")
    config.server.public_url = "http://127.0.0.1"
    server = create_server(create_app(config, db), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@pytest.fixture
def build(make_build):
    """A queued build of project `acme` on `main`; `owner` administers the project."""
    return make_build("main", commit="c0ffee" + "0" * 34, message="First version",
                      author="Ada")


@pytest.fixture
def page(browser, base_url, build):
    """A page signed in as `owner`; a script error or a CSP refusal fails the test."""
    from tests.browser.helpers import expect, sign_in
    context = browser.new_context()
    page = context.new_page()
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    sign_in(page)
    yield page
    context.close()
    assert not problems, problems  # no script errors, nothing refused by the CSP


@pytest.fixture
def work(config, db, people, build, tmp_path):
    """acme's `main` (production, with the queued `build`) and `feature` started from it
    (development), in a real bare repository."""
    work = Work(config, db, people["project"], tmp_path / "work")
    work.commit("Add the shop", {"shop/models.py": "price = 1\n"})
    work.commit("Add the cart", {"shop/cart.py": "items = []\n"}, branch="feature", start="main")
    return work
