"""The Editor tab in Chromium: CodeMirror loads from static/vendor under the CSP,
highlights Python, searches with Ctrl-F, and Ctrl-S saves what was typed into the file
on disk (with the line endings the file had)."""

from __future__ import annotations

from appliance.runtime import git
from tests.browser.helpers import LIVE_TIMEOUT_MS, expect


def test_typing_in_the_code_editor_and_pressing_ctrl_s_saves_the_file(
        page, base_url, config, make_build, work):
    build = make_build("feature", commit=work.head("feature"), state="running",
                       addons_dirs=".")
    src = config.paths.builds / str(build["id"]) / "src"
    git.export_tree(work.bare, build["commit"], src)

    page.goto(f"{base_url}/builds/{build['id']}/editor?path=shop/cart.py")
    editor = page.locator(".editor-file .CodeMirror")
    expect(editor).to_be_visible()
    expect(editor.locator(".cm-variable").first).to_have_text("items")  # Python's mode
    page.locator(".CodeMirror-code").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("extra = 1")

    page.keyboard.press("Control+f")
    expect(page.locator(".CodeMirror-dialog")).to_be_visible()
    page.keyboard.type("extra")
    page.keyboard.press("Enter")
    expect(page.locator(".cm-searching").first).to_have_text("extra")
    page.keyboard.press("Escape")

    page.keyboard.press("Control+s")
    expect(page.locator(".flash").first).to_have_text("Saved shop/cart.py.",
                                                      timeout=LIVE_TIMEOUT_MS)
    assert (src / "shop" / "cart.py").read_bytes() == b"items = []\nextra = 1"
    expect(page.locator(".editor-commit .changed")).to_contain_text("shop/cart.py")
