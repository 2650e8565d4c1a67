"""`appliance key add|list|remove`: an operator manages a named user's SSH keys (the key
from a file or standard input); acting as a user (--as), only their own."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from appliance import cli as cli_module
from appliance.services import Services


@pytest.fixture
def run(config, db, people):
    def invoke(acting_as, *args, input=None):
        obj = cli_module.Context(None, acting_as)
        obj._services = Services(config, db)
        return CliRunner().invoke(cli_module.cli.commands["key"], list(args), obj=obj,
                                  input=input)
    return invoke


@pytest.fixture
def public_key(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@runner", "-f",
                    str(tmp_path / "key")], check=True)
    return tmp_path / "key.pub"


def test_an_operator_adds_lists_and_removes_a_users_key(run, public_key):
    added = run(None, "add", "member", str(public_key))
    assert added.exit_code == 0, added.output
    assert added.output.startswith("key 'ci@runner' of member added: SHA256:")
    listing = run(None, "list", "member").output
    assert listing.startswith("ci@runner\tssh-ed25519\tSHA256:") and "never used" in listing
    assert run(None, "remove", "member", "ci@runner").exit_code == 0
    assert run(None, "list", "member").output == ""


def test_a_key_comes_from_standard_input_with_a_name(run, public_key):
    added = run(None, "add", "owner", "--name", "laptop", input=public_key.read_text())
    assert added.exit_code == 0 and "key 'laptop' of owner added" in added.output


def test_a_refused_key_says_why_and_adds_nothing(run, public_key):
    private = public_key.with_suffix("")
    result = run(None, "add", "member", str(private))
    assert result.exit_code != 0 and "this is a private key" in str(result.exception)
    assert run(None, "list", "member").output == ""


def test_acting_as_a_user_manages_only_their_own_keys(run, public_key):
    refused = run("member", "add", "owner", str(public_key))
    assert refused.exit_code != 0
    assert "only your own keys" in str(refused.exception)
    assert run("member", "add", "member", str(public_key)).exit_code == 0
    assert run("admin", "list", "member").output.startswith("ci@runner")
