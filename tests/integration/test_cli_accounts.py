"""The command line sets passwords under the same rules as the web, and makes tokens with
scopes and an expiry (by default [accounts] token_default_days)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from appliance import cli as cli_module
from appliance.errors import UserError
from appliance.services import Services
from appliance.store import users as store_users
from tests.helpers_web import PASSWORD


@pytest.fixture
def run(config, db, people):
    def invoke(*args, input=None):
        obj = cli_module.Context(None)
        obj._services = Services(config, db)
        return CliRunner().invoke(cli_module.cli.commands[args[0]], list(args[1:]), obj=obj,
                                  input=input)
    return invoke


def password_works(db, name: str, password: str) -> bool:
    with db.transaction() as conn:
        return store_users.authenticate(conn, name, password) is not None


@pytest.mark.parametrize("password, reason", [
    ("iloveyou1234", "most common"), ("member!2030!", "user name"), ("too short", "at least 12"),
])
def test_the_cli_refuses_a_password_the_rules_refuse_and_changes_nothing(run, db, password,
                                                                        reason):
    result = run("user", "password", "member", "--password-stdin", input=password + "\n")
    assert isinstance(result.exception, UserError) and reason in str(result.exception)
    assert password_works(db, "member", PASSWORD)
    made = run("user", "create", "newcomer", "--password-stdin",
               input=password.replace("member", "newcomer") + "\n")
    assert isinstance(made.exception, UserError)
    with db.transaction() as conn:
        assert conn.execute("SELECT 1 FROM users WHERE name = 'newcomer'").fetchone() is None


def test_the_cli_minimum_length_is_the_configured_one(run, db, config):
    config.accounts.password_min_length = 24
    result = run("user", "password", "member", "--password-stdin",
                 input="a fine long passphrase\n")
    assert isinstance(result.exception, UserError) and "at least 24" in str(result.exception)
    config.accounts.password_min_length = 12
    assert run("user", "password", "member", "--password-stdin",
               input="a fine long passphrase\n").exit_code == 0
    assert password_works(db, "member", "a fine long passphrase")


def test_token_create_takes_scopes_and_an_expiry_and_defaults_to_the_configured_days(
        run, db, config):
    made = run("token", "create", "member", "--label", "ci", "--scope", "git_read",
               "--expires", "7")
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    config.accounts.token_default_days = 0
    assert run("token", "create", "member").exit_code == 0
    with db.transaction() as conn:
        rows = store_users.list_tokens(conn, store_users.user_by_name(conn, "member")["id"])
        assert store_users.user_by_token(conn, "member", token, "git_read") is not None
    never, seven_days = rows
    assert seven_days["scopes"] == ["git_read"]
    assert seven_days["expires_at"] - seven_days["created_at"] < dt.timedelta(days=7, minutes=1)
    assert never["scopes"] == list(store_users.ALL_SCOPES) and never["expires_at"] is None
    refused = run("token", "create", "member", "--expires", "yesterday")
    assert isinstance(refused.exception, UserError)
