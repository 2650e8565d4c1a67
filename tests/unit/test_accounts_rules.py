"""Pure rules of accounts: which passwords are refused and why, what a token's expiry
means, which time-based codes are accepted, and the [accounts] section of the config."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from appliance import config as config_mod
from appliance import passwords
from appliance.errors import ConfigError, UserError
from appliance.store import totp
from appliance.store.users import token_expiry

NOW = dt.datetime(2030, 5, 17, 10, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("password, reason", [
    ("short pass", "at least 12 characters (this one has 10)"),
    ("alice.martin", "your user name"),
    ("ALICE.MARTIN2030!", "your user name"),
    ("iloveyou1234", "most common"),
    ("!!Qwertyuiop!!", "most common"),
    ("Password2030!", "most common"),
    ("aaaaaaaaaaaaaa", "different characters"),
    ("121212121212", "different characters"),
])
def test_a_weak_password_is_refused_with_its_reason(password, reason):
    assert reason in passwords.problem(password, "alice.martin")
    with pytest.raises(UserError, match=reason.split(" (")[0]):
        passwords.check(password, "alice.martin")


@pytest.mark.parametrize("password", ["correct horse battery", "alice and her ledger",
                                      "Tr0ub4dor&3xyz", "password-alice-owner"])
def test_a_long_uncommon_password_is_accepted(password):
    assert passwords.problem(password, "alice") is None


def test_the_minimum_length_is_the_one_asked():
    assert passwords.problem("correct horse", "alice", min_length=20).startswith(
        "A password needs at least 20 characters")
    assert passwords.problem("four words for me", "alice", min_length=8) is None


def test_the_common_password_list_ships_with_the_package():
    common = passwords.common_passwords()
    assert len(common) > 4000 and "password" in common and "qwerty" in common
    assert not any(line.startswith("#") for line in common)


# A token's expiry

@pytest.mark.parametrize("text, expected", [
    ("never", None), ("", None), (" Never ", None),
    ("30", NOW + dt.timedelta(days=30)), ("7d", NOW + dt.timedelta(days=7)),
    ("2030-05-17", dt.datetime(2030, 5, 18, tzinfo=dt.timezone.utc)),
    ("2031-01-31", dt.datetime(2031, 2, 1, tzinfo=dt.timezone.utc)),
])
def test_an_expiry_is_never_days_or_the_end_of_a_date(text, expected):
    assert token_expiry(text, NOW) == expected


@pytest.mark.parametrize("text, reason", [
    ("0", "from 1 to"), ("99999", "from 1 to"), ("2030-05-16", "that day is over"),
    ("tomorrow", "a date"), ("2030-13-01", "a date"), ("-5", "a date"),
])
def test_an_expiry_in_the_past_or_unreadable_is_refused(text, reason):
    with pytest.raises(UserError, match=reason):
        token_expiry(text, NOW)


# Time-based codes

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_the_current_code_and_those_one_step_either_side_are_accepted_with_their_step():
    app = pyotp.TOTP(SECRET)
    step = int(NOW.timestamp()) // 30
    for offset in (-1, 0, 1):
        code = app.at(NOW + dt.timedelta(seconds=30 * offset))
        assert totp.matching_step(SECRET, code, NOW) == step + offset


def test_a_code_two_steps_away_or_not_six_digits_is_refused():
    app = pyotp.TOTP(SECRET)
    assert totp.matching_step(SECRET, app.at(NOW - dt.timedelta(seconds=60)), NOW) is None
    assert totp.matching_step(SECRET, app.at(NOW + dt.timedelta(seconds=60)), NOW) is None
    code = app.at(NOW)
    assert totp.matching_step(SECRET, f"{code[:3]} {code[3:]}", NOW) is not None
    for bad in ("", "12345", "1234567", "abcdef", code + "0"):
        assert totp.matching_step(SECRET, bad, NOW) is None


def test_the_provisioning_uri_names_the_user_and_the_issuer():
    uri = totp.provisioning_uri(SECRET, "alice", "Odoo appliance (example.com)")
    assert uri.startswith("otpauth://totp/") and f"secret={SECRET}" in uri
    assert "alice" in uri and "example.com" in uri


# The [accounts] section

def test_the_accounts_section_is_read_with_its_defaults(tmp_path):
    assert config_mod.load(tmp_path / "none.toml", env={}).accounts == config_mod.AccountsConfig(
        password_min_length=12, require_totp_for_admins=False, token_default_days=90)
    path = tmp_path / "a.toml"
    path.write_text("[accounts]\npassword_min_length = 16\nrequire_totp_for_admins = true\n"
                    "token_default_days = 0\n")
    accounts = config_mod.load(path, env={"APPLIANCE_ACCOUNTS_PASSWORD_MIN_LENGTH": "14"}).accounts
    assert (accounts.password_min_length, accounts.require_totp_for_admins,
            accounts.token_default_days) == (14, True, 0)


@pytest.mark.parametrize("text, reason", [
    ("password_min_length = 6", "at least 8"),
    ("token_default_days = -1", "0 for never"),
])
def test_accounts_settings_that_weaken_too_much_are_refused(tmp_path, text, reason):
    path = tmp_path / "a.toml"
    path.write_text(f"[accounts]\n{text}\n")
    with pytest.raises(ConfigError, match=reason):
        config_mod.load(path, env={})
