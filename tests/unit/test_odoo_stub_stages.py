"""The stand-in Odoo across revisions of one repository (`tests/addons/stages/`):
neutralization of a copy, updates with migrations, a failing update, a server
that does not start. Same requirements and fixtures as test_odoo_stub.py.
"""

import shutil
import subprocess

import pytest

from appliance.runtime.odoo import parse_log, server_command, update_command

from test_odoo_stub import (  # noqa: F401  (fixtures are found by name)
    DEBIAN_PYTHON, NOBODY, RUN_TIMEOUT, SAMPLE_REPOS, _open_up, database, requirements,
    role_password, stub_for, stub_tree, workdir,
)

pytestmark = pytest.mark.slow  # the stand-in Odoo run in subprocesses, a database a test

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
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'shop.payment_mode'") == "live"


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
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'shop.payment_mode'") == "test"
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
    assert stub.sql("SELECT count(*) FROM ir_cron WHERE active") == "3"
    assert stub.sql("SELECT count(*) FROM ir_config_parameter WHERE key = 'database.is_neutralized'") == "0"
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'shop.payment_mode'") == "live"
    assert done.stdout.index("UPDATE ir_mail_server") < done.stdout.index("shop.payment_mode")
    assert not stub.logfile.exists() or "neutralization" not in stub.logfile.read_text().lower()


def make_module(repo, name, depends, neutralize_sql):
    """A module with nothing but a manifest and a data/neutralize.sql."""
    folder = repo / name
    (folder / "data").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "__manifest__.py").write_text(
        repr({"name": name, "version": "18.0.1.0.0", "depends": depends, "license": "LGPL-3"}))
    (folder / "data" / "neutralize.sql").write_text(neutralize_sql)
    _open_up(repo)


def test_neutralize_runs_base_first_then_each_module_after_its_dependencies(stub_for):
    stub = stub_for(f"{STAGES}/v1")
    # a_child sorts first by name and gets the lower id, but depends on z_parent
    make_module(stub.repo, "z_parent", ["shop"],
                "INSERT INTO ir_config_parameter (key, value) VALUES ('stand_in.order', 'parent');\n")
    make_module(stub.repo, "a_child", ["z_parent"],
                "UPDATE ir_config_parameter SET value = value || '+child' WHERE key = 'stand_in.order';\n")
    code, log, _ = stub.install(modules=["shop", "z_parent", "a_child"], test_enable=False)
    assert code == 0, log
    assert int(stub.sql("SELECT id FROM ir_module_module WHERE name = 'a_child'")) < \
        int(stub.sql("SELECT id FROM ir_module_module WHERE name = 'z_parent'"))
    done = subprocess.run(stub.command(neutralize_command) + ["--stdout"], env=stub.env, cwd=stub.workdir,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    positions = [done.stdout.index(text) for text in
                 ("UPDATE ir_mail_server", "SET value = 'test'", "'stand_in.order', 'parent'", "'+child'")]
    assert positions == sorted(positions), done.stdout
    code, log, _ = stub.run(neutralize_command)
    assert code == 0, log
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'stand_in.order'") == "parent+child"


def test_neutralize_reads_its_options_from_a_configuration_file(stub_for, stub_tree):
    stub = installed_v1(stub_for)
    conf = stub.workdir / "odoo.conf"
    conf.write_text("[options]\n"
                    f"db_host = 127.0.0.1\ndb_user = stubtest\naddons_path = {stub.repo}\n"
                    f"logfile = {stub.logfile}\n")
    conf.chmod(0o644)
    stub.logfile.unlink(missing_ok=True)
    done = subprocess.run(NOBODY + [DEBIAN_PYTHON, str(stub_tree / "odoo-bin"), "neutralize",
                                    "-c", str(conf), "-d", stub.database],
                          env=stub.env, cwd=stub.workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "Neutralization finished" in stub.logfile.read_text()
    assert stub.sql("SELECT value FROM ir_config_parameter WHERE key = 'shop.payment_mode'") == "test"


def test_neutralize_of_a_database_that_does_not_exist_exits_1(stub_for):
    stub = stub_for(f"{STAGES}/v1")
    command = stub.command(neutralize_command)
    command[command.index("-d") + 1] = f"{stub.database}_missing"
    done = subprocess.run(command, env=stub.env, cwd=stub.workdir, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    assert done.returncode == 1
    critical = [r for r in parse_log(stub.logfile.read_text()) if r.level == "CRITICAL"]
    assert [r.message for r in critical] == [
        "An error occurred during the neutralization. THE DATABASE IS NOT NEUTRALIZED!"]


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


def test_a_failing_migration_exits_255_and_rolls_the_module_back(stub_for):
    stub = installed_v1(stub_for)
    stub.sql("INSERT INTO shop_order (name, amount) VALUES ('SO001', 10)")
    advance(stub, "v2")
    script = stub.repo / "shop" / "migrations" / "18.0.1.0.1" / "post-migrate.py"
    script.write_text(script.read_text() + "    raise ValueError('cannot migrate the orders')\n")
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 255, log
    failed = [r for r in parse_log(log) if r.level == "CRITICAL"][-1]
    assert "ValueError: cannot migrate the orders" in failed.text
    assert version_of_shop(stub) == "18.0.1.0.0"
    assert stub.sql("SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'shop_order' AND column_name = 'note'") == "0"
    assert stub.sql("SELECT name FROM shop_order") == "SO001"


def test_pre_post_and_end_migrations_run_in_that_order(stub_for):
    stub = installed_v1(stub_for)
    advance(stub, "v2")
    folder = stub.repo / "shop" / "migrations" / "18.0.1.0.1"
    (folder / "pre-columns.py").write_text(
        "def migrate(cr, version):\n"
        "    cr.execute(\"SELECT count(*) FROM information_schema.columns \"\n"
        "               \"WHERE table_name = 'shop_order' AND column_name = 'note'\")\n"
        "    assert cr.fetchone()[0] == 0, 'pre- runs before the tables are updated'\n"
        "    assert version == '18.0.1.0.0', version\n")
    (folder / "end-orders.py").write_text(
        "def migrate(cr, version):\n"
        "    cr.execute(\"INSERT INTO shop_order (name, amount, note) VALUES ('END', 0, 'end')\")\n")
    _open_up(stub.repo)
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 0, log
    ran = [r.message for r in parse_log(log) if "Running migration" in r.message]
    assert ran == ["module shop: Running migration [>18.0.1.0.1] pre-columns",
                   "module shop: Running migration [18.0.1.0.1>] post-migrate",
                   "module shop: Running migration [$18.0.1.0.1] end-orders"]
    assert stub.sql("SELECT note FROM shop_order WHERE name = 'END'") == "end"
    code, log, _ = stub.run(update_command, modules=["shop"], test_enable=False)
    assert code == 0, log
    assert "Running migration" not in log, "scripts run once: the version is now installed"


def test_in_a_multi_module_update_the_modules_before_the_failing_one_stay_updated(stub_for):
    stub = stub_for("two_modules")
    code, log, _ = stub.install(modules=["demo_b"], test_enable=False)
    assert code == 0, log
    for name in ("demo_a", "demo_b"):
        manifest = stub.repo / "addons" / name / "__manifest__.py"
        manifest.write_text(manifest.read_text().replace("18.0.1.0.0", "18.0.1.0.1"))
    manifest = stub.repo / "addons" / "demo_b" / "__manifest__.py"
    manifest.write_text(manifest.read_text().replace(
        '"data": [', '"data": ["data/broken.xml", '))
    (stub.repo / "addons" / "demo_b" / "data").mkdir()
    (stub.repo / "addons" / "demo_b" / "data" / "broken.xml").write_text(
        '<odoo><record id="x" model="ir.cron"><field name="no_such_field">1</field></record></odoo>\n')
    _open_up(stub.repo)
    code, log, _ = stub.run(update_command, modules=["demo_a", "demo_b"], test_enable=False)
    assert code == 255, log
    assert 'Invalid field "no_such_field" on model "ir.cron"' in log
    assert stub.sql("SELECT name, state, latest_version FROM ir_module_module "
                    "WHERE name LIKE 'demo_%' ORDER BY name").splitlines() == [
        "demo_a|installed|18.0.1.0.1", "demo_b|installed|18.0.1.0.0"]


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
