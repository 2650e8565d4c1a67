"""The command line honours the same policy as the web when it acts as a user (--as):
what the user's role may not do is refused, with the same words, and nothing changes.
Without --as it acts as the server's operator."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from appliance import cli as cli_module
from appliance.services import Services
from appliance.store import builds as store_builds


@pytest.fixture
def run(config, db, people):
    def invoke(acting_as, *args):
        obj = cli_module.Context(None, acting_as)
        obj._services = Services(config, db)
        return CliRunner().invoke(cli_module.cli.commands[args[0]], list(args[1:]), obj=obj)
    return invoke


def stage_of(db, name):
    with db.transaction() as conn:
        return conn.execute("SELECT stage FROM branches WHERE name = %s", (name,)).fetchone()[
            "stage"]


def test_a_developer_cannot_move_production_through_the_cli_and_nothing_changes(
        run, db, make_build):
    make_build("main")
    result = run("member", "branch", "stage", "acme", "main", "development")
    assert result.exit_code != 0
    assert "does not allow this on production" in str(result.exception or result.output)
    assert stage_of(db, "main") == "production"
    result = run("owner", "branch", "stage", "acme", "main", "development")
    assert result.exit_code == 0, result.output
    assert stage_of(db, "main") == "development"


def test_a_developer_reads_development_logs_but_not_production_s(run, make_build, config):
    from appliance import layout
    production, feature = make_build("main"), make_build("feature")
    for build in (production, feature):
        path = layout.log_path(config, build["id"], "odoo")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"line of build {build['id']}\n")
    refused = run("member", "logs", str(production["id"]), "--file", "odoo")
    assert refused.exit_code != 0 and "line of build" not in refused.output
    shown = run("member", "logs", str(feature["id"]), "--file", "odoo")
    assert shown.exit_code == 0 and f"line of build {feature['id']}" in shown.output
    assert run(None, "logs", str(production["id"]), "--file", "odoo").exit_code == 0


def test_an_outsider_acting_through_the_cli_is_told_the_project_does_not_exist(
        run, db, make_build):
    build = make_build("feature")
    result = run("outsider", "build", "rebuild", "feature", "--project", "acme")
    assert result.exit_code != 0
    assert "no project 'acme'" in str(result.exception or result.output)
    with db.transaction() as conn:
        assert len(store_builds.builds_of_branch(conn, build["branch_id"], 10)) == 1


def test_an_archived_project_is_not_rebuilt_nor_moved_from_the_cli_either(run, db, make_build):
    build = make_build("feature")
    with db.transaction() as conn:
        conn.execute("UPDATE projects SET archived_at = now() WHERE name = 'acme'")
    for args in (("build", "rebuild", "feature", "--project", "acme"),
                 ("branch", "stage", "acme", "feature", "staging")):
        result = run(None, *args)
        assert result.exit_code != 0, args
        assert "acme is archived" in str(result.exception or result.output)
    assert stage_of(db, "feature") == "development"
    with db.transaction() as conn:
        assert len(store_builds.builds_of_branch(conn, build["branch_id"], 10)) == 1
