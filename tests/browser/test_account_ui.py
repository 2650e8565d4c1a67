"""The account page in Chromium: the strength meter follows what is typed (zxcvbn loaded
under the CSP, no script error), and a token made there is shown once."""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import expect

pytestmark = pytest.mark.browser


def test_the_meter_rates_a_new_password_as_it_is_typed_and_a_new_token_shows_once(page,
                                                                                  base_url):
    page.click(".topbar .user-name")
    expect(page).to_have_url(re.compile(r"/account$"))
    meter = page.locator("#new_password-strength")
    expect(meter).to_be_hidden()
    page.fill("input[name=new_password]", "password1")
    expect(meter).to_be_visible()
    expect(meter.locator(".strength-words")).to_contain_text("very weak")
    page.fill("input[name=new_password]", "quiet lanterns over the harbour")
    expect(meter.locator(".strength-words")).to_have_text("very strong")
    assert meter.locator("meter").evaluate("m => m.value") == 4

    page.fill("input[name=label]", "laptop")
    page.click("text=Make the token")
    token = page.locator("input.token-value").input_value()
    assert token.startswith("appl_")
    expect(page.locator("table.tokens")).to_contain_text("laptop")
    page.goto(base_url + "/account")
    expect(page.locator("table.tokens")).to_contain_text("laptop")
    assert token not in page.content()
