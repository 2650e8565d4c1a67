"""Plain helpers of the browser tests (not fixtures, not tests): Playwright's `expect`,
launching Debian's Chromium, signing in, finding a branch on the project page.

A test module that imports this is skipped where Playwright or Chromium is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers_web import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
# Long enough for htmx's 2 s polling plus a slow machine.
LIVE_TIMEOUT_MS = 8000

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

if not CHROMIUM.exists():
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)",
                allow_module_level=True)


def launch(playwright):
    """Debian's Chromium, headless, quiet on the network."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-gpu"])


def sign_in(page, name: str = "owner", password: str = PASSWORD) -> None:
    """Fill in the login form the page shows and wait until signed in."""
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator(".topbar .user-name")).to_contain_text(name)


def branch(page, name: str):
    """A branch's row on the project page."""
    return page.locator(f'.branch[data-branch="{name}"]')
