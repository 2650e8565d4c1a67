"""What the audit trail keeps of a request or a command: pure functions, no database."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from appliance import cli as cli_module
from appliance import cli_audit
from appliance import config as config_mod
from appliance.errors import ConfigError, NotFound, UserError
from appliance.store import audit


def test_only_known_safe_fields_are_kept():
    form = MultiDict([("relay_host", "smtp.example.com"), ("stage", "staging"),
                      ("next", "/somewhere"), ("favourite_colour", "blue"),
                      ("relay_password", "s3cret"), ("csrf_token", "abc"),
                      ("new_password", "x"), ("code", "123456"), ("content", "print()")])
    assert audit.clean(form) == {"relay_host": "smtp.example.com", "stage": "staging"}


def test_a_secrets_word_in_a_name_wins_over_the_list_of_safe_ones(monkeypatch):
    monkeypatch.setattr(audit, "SAFE_FIELDS", audit.SAFE_FIELDS | {"api_token", "totp_name"})
    assert audit.clean({"api_token": "t", "totp_name": "phone", "stage": "dev"}) == {
        "stage": "dev"}


def test_a_url_keeps_neither_its_credentials_nor_its_query_string():
    kept = audit.clean({"source": "https://ada:pw@files.example.com/dump.zip?X-Amz-Signature=a1",
                        "location": "rest:https://u:p@backup.example.com/repo"})
    assert kept == {"source": "https://files.example.com/dump.zip?…",
                    "location": "rest:https://backup.example.com/repo"}
    assert audit.scrub("failed: https://u:p@h/x?k=v and more") == "failed: https://h/x?… and more"


def test_long_values_are_cut_lists_kept_short_and_matrix_cells_gathered():
    form = MultiDict([("modules", "m" * 500), ("scopes", "git_read"), ("scopes", "api"),
                      ("staging:shell:tester", "1"), ("production:logs:developer", "1"),
                      ("production:logs:admin", "1")])
    kept = audit.clean(form)
    assert len(kept["modules"]) == audit.MAX_VALUE + 1 and kept["modules"].endswith("…")
    assert kept["scopes"] == ["git_read", "api"]
    assert kept["cells"] == ["production:logs:developer", "staging:shell:tester"]


def test_filters_read_dates_and_refuse_anything_else():
    filters = audit.Filters.from_args({"user": " ada ", "since": "2025-01-31"})
    assert filters.user == "ada" and filters.query() == {"user": "ada", "since": "2025-01-31"}
    where, params = filters.where()
    assert where == "user_name = %s AND at >= %s" and params[0] == "ada"
    with pytest.raises(UserError, match="not a date"):
        audit.Filters.from_args({"until": "yesterday"})


def test_a_commands_path_is_read_past_the_groups_options():
    argv = ["--config", "/etc/a.toml", "-v", "--as=ada", "project", "archive", "acme"]
    path, command, rest, options = cli_audit.resolve(cli_module.cli, argv)
    assert path == ("project", "archive") and rest == ["acme"]
    assert command is cli_module.cli.commands["project"].commands["archive"]
    assert options == {"config_path": "/etc/a.toml", "acting_as": "ada"}
    assert cli_audit.parameters(command, "archive", rest) == {"name": "acme"}
    assert cli_audit.resolve(cli_module.cli, ["project"])[0] == ("project",)


def test_every_command_left_out_of_the_trail_exists():
    """The list of commands that change nothing names real ones (a renamed command
    must not be left out by mistake, nor a new one: everything else is recorded)."""
    for path in cli_audit.NOT_RECORDED:
        found, command, _, _ = cli_audit.resolve(cli_module.cli, list(path))
        assert found == path, path


@pytest.mark.parametrize("exc, ending", [
    (None, (0, "ok", "")), (SystemExit(0), (0, "ok", "")),
    (SystemExit(2), (2, "refused", "usage error")),
    (NotFound("no project 'x'"), (1, "not_found", "no project 'x'")),
    (UserError("busy"), (1, "refused", "busy")),
    (ConfigError("bad"), (3, "error", "bad")),
])
def test_how_a_command_ended(exc, ending):
    assert cli_audit.ending(exc) == ending


def test_the_retention_is_read_from_the_config_and_must_be_a_day_or_more(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text("[audit]\nretention_days = 30\n")
    assert config_mod.load(path, env={}).audit.retention_days == 30
    assert config_mod.load(tmp_path / "none.toml", env={}).audit.retention_days == 365
    path.write_text("[audit]\nretention_days = 0\n")
    with pytest.raises(ConfigError, match="retention_days"):
        config_mod.load(path, env={})
