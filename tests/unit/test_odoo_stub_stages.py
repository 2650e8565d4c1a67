"""The stand-in Odoo across revisions of one repository (`tests/addons/stages/`):
neutralization of a copy, updates with migrations, a failing update, a server
that does not start. Same requirements and fixtures as test_odoo_stub.py.
"""

import shutil
import subprocess

from appliance.runtime.odoo import parse_log, server_command, update_command

from test_odoo_stub import (  # noqa: F401  (fixtures are found by name)
    RUN_TIMEOUT, SAMPLE_REPOS, _open_up, database, requirements, role_password, stub_for,
    stub_tree, workdir,
)

STAGES = "stages"


def neutralize_command(**server):
    """`odoo-bin neutralize` with the server's options, as the staging pipeline builds it."""
    command = server_command(**server)
    command.insert(2, "neutralize")
    return command


def advance(stub, revision):
    """Copy the repository content of `revision` over the work tree, like a new commit."""
    shutil.copytree(SAMPLE_REPOS / STAGES / revision, stub.repo, dirs_exist_ok=True)
    _open_up(stub.repo)


def installed_v1(stub_for):
    stub = stub_for(f"{STAGES}/v1")
    code, log, _ = stub.install()
    assert code == 0, log
    return stub


def version_of_shop(stub):
    return stub.sql("SELECT latest_version FROM ir_module_module WHERE name = 'shop'")


# ----------------------------------------------------------------- neutralize


def test_v1_installs_with_its_mail_server_and_cron_and_base_crons(stub_for):
    stub = installed_v1(stub_for)
    assert version_of_shop(stub) == "18.0.1.0.0"
    assert stub.sql("SELECT smtp_host, smtp_port, active FROM ir_mail_server") == "smtp.example.com|587|t"
    assert stub.sql("SELECT name, active FROM ir_cron ORDER BY name").splitlines() == [
        "Base: Auto-vacuum internal data|t",
        "Base: Portal Users Deletion|t",
        "Shop: send reminders|t",
    ]


def test_neutralize_turns_mail_and_crons_off_but_keeps_the_vacuum(stub_for):
    stub = installed_v1(stub_for)
    code, log, stderr = stub.run(neutralize_command)
    assert code == 0, log + stderr
    messages = [(r.logger, r.message) for r in parse_log(log)]
    assert ("odoo.cli.neutralize", f"Starting {stub.database} database neutralization") in messages
    assert ("odoo.modules.neutralize", "Neutralization finished") in messages
    assert stub.sql("SELECT name, smtp_host, smtp_port, active FROM ir_mail_server ORDER BY id").splitlines() == [
        "Company SMTP|smtp.example.com|587|f",
        "neutralization - disable emails|invalid|1025|t",
    ]
    assert stub.sql("SELECT name, active FROM ir_cron ORDER BY name").splitlines() == [
        "Base: Auto-vacuum internal data|t",
        "Base: Portal Users Deletion|f",
        "Shop: send reminders|f",
    ]
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'") == "true"
    code, log, _ = stub.run(neutralize_command)
    assert code == 0, log
    assert stub.sql("SELECT count(*) FROM ir_mail_server WHERE smtp_host = 'invalid'") == "2"
    assert stub.sql("SELECT count(*) FROM ir_config_parameter WHERE key = 'database.is_neutralized'") == "1"


def test_neutralize_stdout_prints_the_sql_and_changes_nothing(stub_for):
    stub = installed_v1(stub_for)
    done = subprocess.run(stub.command(neutralize_command) + ["--stdout"], env=stub.env, cwd=stub.workdir,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert (lines[0], lines[-1]) == ("BEGIN;", "COMMIT;")
    assert "UPDATE ir_mail_server" in done.stdout
    assert stub.sql("SELECT count(*) FROM ir_mail_server WHERE active") == "1"
    assert stub.sql("SELECT count(*) FROM ir_config_parameter WHERE key = 'database.is_neutralized'") == "0"


def test_neutralize_without_a_database_exits_1(stub_for):
    stub = stub_for(f"{STAGES}/v1")
    command = stub.command(neutralize_command)
    del command[command.index("-d"):command.index("-d") + 2]
    done = subprocess.run(command, env=stub.env, cwd=stub.workdir, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    assert done.returncode == 1
    assert "Neutralize command needs a database name" in stub.logfile.read_text()


# ----------------------------------------------------------------- updates


def test_v2_update_runs_the_migration_and_sets_latest_version(stub_for):
    stub = installed_v1(stub_for)
    stub.sql("INSERT INTO shop_order (name, amount) VALUES ('SO001', 10), ('SO002', 20)")
    advance(stub, "v2")
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=True)
    assert code == 0, log
    assert "module shop: Running migration [18.0.1.0.1>] post-migrate" in log
    assert version_of_shop(stub) == "18.0.1.0.1"
    assert stub.sql("SELECT name, note FROM shop_order ORDER BY name").splitlines() == [
        "SO001|migrated", "SO002|migrated"]


def test_a_code_only_change_needs_no_migration(stub_for):
    stub = installed_v1(stub_for)
    advance(stub, "v1_code_only")
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 0, log
    assert "Running migration" not in log
    assert version_of_shop(stub) == "18.0.1.0.0"


def test_a_broken_update_exits_255_and_rolls_the_module_back(stub_for):
    stub = installed_v1(stub_for)
    stub.sql("INSERT INTO shop_order (name, amount) VALUES ('SO001', 10)")
    advance(stub, "v2_broken_update")
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 255, log
    failed = [r for r in parse_log(log) if r.level == "CRITICAL"][-1]
    assert failed.message.startswith("Failed to initialize database")
    assert "Traceback (most recent call last):" in failed.text
    assert "shop.setting.missing" in failed.text
    assert version_of_shop(stub) == "18.0.1.0.0"
    assert stub.sql("SELECT state FROM ir_module_module WHERE name = 'shop'") == "installed"
    assert stub.sql("SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'shop_order' AND column_name = 'note'") == "0"


def test_a_post_load_hook_that_raises_stops_the_server_with_exit_1(stub_for):
    stub = installed_v1(stub_for)
    advance(stub, "v2_server_fails")
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 0, log
    assert version_of_shop(stub) == "18.0.1.0.1"
    stub.logfile.unlink()
    done = subprocess.run(stub.command(server_command), env=stub.env, cwd=stub.workdir,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 1, done.stderr
    log = stub.logfile.read_text()
    critical = [r for r in parse_log(log) if r.level == "CRITICAL"]
    assert len(critical) == 1, log
    assert "Traceback (most recent call last):" in critical[0].text
    assert "RuntimeError: shop: SHOP_API_KEY is not configured" in critical[0].text
    assert "HTTP service (werkzeug) running" not in log
