"""Finding addons in a repository, and the command lines built for Odoo."""

from pathlib import Path

import pytest

from appliance.errors import ManifestError
from appliance.runtime.odoo import (
    addons_dirs, find_modules, full_version, install_command, read_manifest,
    server_command, update_command,
)

SAMPLE_REPOS = Path(__file__).parent.parent / "addons"


def make_addon(root: Path, relative: str, manifest: str = "{'name': 'x'}") -> Path:
    folder = root / relative
    folder.mkdir(parents=True)
    (folder / "__manifest__.py").write_text(manifest)
    (folder / "__init__.py").write_text("")
    return folder


# ----------------------------------------------------------------- manifests


def test_modules_at_the_root_and_one_level_down_are_found_sorted(tmp_path):
    make_addon(tmp_path, "zeta", "{'version': '1.0', 'depends': ['base']}")
    make_addon(tmp_path, "addons/alpha", "{'version': '18.0.2.0.0', 'depends': ['zeta', 'mail']}")
    modules = find_modules(tmp_path)
    assert [(m.name, m.path) for m in modules] == [("alpha", "addons/alpha"), ("zeta", "zeta")]
    assert modules[0].version == "18.0.2.0.0"
    assert modules[0].depends == ["zeta", "mail"]
    assert modules[0].installable is True
    assert modules[1].data == {"version": "1.0", "depends": ["base"]}


def test_a_module_folder_is_not_searched_further(tmp_path):
    make_addon(tmp_path, "outer")
    make_addon(tmp_path, "outer/inner")
    assert [m.name for m in find_modules(tmp_path)] == ["outer"]


def test_modules_deeper_than_two_levels_are_ignored(tmp_path):
    make_addon(tmp_path, "a/b/too_deep")
    assert find_modules(tmp_path) == []


def test_dot_folders_are_ignored(tmp_path):
    make_addon(tmp_path, ".git/hidden")
    make_addon(tmp_path, ".hidden")
    make_addon(tmp_path, "visible")
    assert [m.name for m in find_modules(tmp_path)] == ["visible"]


def test_installable_false_modules_are_skipped(tmp_path):
    make_addon(tmp_path, "old", "{'installable': False}")
    make_addon(tmp_path, "new")
    assert [m.name for m in find_modules(tmp_path)] == ["new"]


def test_a_manifest_that_is_not_a_dict_names_its_folder(tmp_path):
    make_addon(tmp_path, "good")
    make_addon(tmp_path, "broken", '["not", "a", "dict"]')
    with pytest.raises(ManifestError, match=r"^broken/__manifest__.py: not a Python dict \(it is a list\)"):
        find_modules(tmp_path)


def test_a_manifest_with_a_syntax_error_names_its_folder_and_line(tmp_path):
    folder = make_addon(tmp_path, "typo", "{\n  'name': 'x',,\n}")
    with pytest.raises(ManifestError, match=r"^typo/__manifest__.py: not a Python dict \(syntax error line 2"):
        read_manifest(folder)


def test_a_manifest_with_code_is_refused(tmp_path):
    folder = make_addon(tmp_path, "clever", "{'name': __import__('os').getcwd()}")
    with pytest.raises(ManifestError, match="not a Python dict"):
        read_manifest(folder)


def test_an_unreadable_manifest_is_a_manifest_error(tmp_path):
    folder = make_addon(tmp_path, "binary")
    (folder / "__manifest__.py").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match=r"^binary/__manifest__.py: cannot be read"):
        read_manifest(folder)


def test_depends_must_be_a_list_of_names(tmp_path):
    folder = make_addon(tmp_path, "odd", "{'depends': 'base'}")
    with pytest.raises(ManifestError, match="'depends' must be a list"):
        read_manifest(folder)


def test_the_same_module_twice_is_an_error(tmp_path):
    make_addon(tmp_path, "dup")
    make_addon(tmp_path, "addons/dup")
    with pytest.raises(ManifestError, match="module dup is in two folders"):
        find_modules(tmp_path)


def test_addons_dirs_lists_each_parent_folder_once(tmp_path):
    make_addon(tmp_path, "a")
    make_addon(tmp_path, "addons/b")
    make_addon(tmp_path, "addons/c")
    assert addons_dirs(tmp_path, find_modules(tmp_path)) == [".", "addons"]


def test_a_repository_without_modules_has_no_addons_dirs(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("hello")
    assert find_modules(tmp_path) == [] and addons_dirs(tmp_path, []) == []


@pytest.mark.parametrize("version, expected", [
    ("1.0", "18.0.1.0"), ("18.0.1.0.1", "18.0.1.0.1"), ("18.0", "18.0.18.0"), ("18.01", "18.0.18.01"),
])
def test_full_version_prefixes_the_series_like_odoo(version, expected):
    assert full_version(version) == expected


# ----------------------------------------------------------------- sample repositories


def test_the_sample_repositories_hold_what_their_names_say():
    assert [m.name for m in find_modules(SAMPLE_REPOS / "green")] == ["demo_ok"]
    assert [m.name for m in find_modules(SAMPLE_REPOS / "red_test")] == ["demo_fail"]
    assert [m.name for m in find_modules(SAMPLE_REPOS / "yellow")] == ["demo_warn"]
    assert [m.name for m in find_modules(SAMPLE_REPOS / "import_error")] == ["demo_import_error"]
    assert [m.name for m in find_modules(SAMPLE_REPOS / "requirements")] == ["demo_six"]
    assert find_modules(SAMPLE_REPOS / "no_module") == []
    two = find_modules(SAMPLE_REPOS / "two_modules")
    assert [(m.name, m.depends) for m in two] == [("demo_a", ["base"]), ("demo_b", ["demo_a"])]
    assert addons_dirs(SAMPLE_REPOS / "two_modules", two) == ["addons"]


def test_the_bad_manifest_sample_is_refused():
    with pytest.raises(ManifestError, match="demo_bad_manifest/__manifest__.py: not a Python dict"):
        find_modules(SAMPLE_REPOS / "bad_manifest")


# ----------------------------------------------------------------- command lines

COMMON = dict(odoo_bin="/opt/odoo/odoo-bin", database="p1_main", db_host="/run/postgresql",
              db_user="p1", addons_path=["/mnt/repo/.", "/mnt/repo/addons"], data_dir="/var/lib/odoo")


def test_server_command_leaves_the_password_to_the_environment():
    command = server_command(**COMMON, db_password=None)
    assert command == [
        "python3", "/opt/odoo/odoo-bin", "-d", "p1_main", "--db_host", "/run/postgresql", "-r", "p1",
        "--addons-path", "/mnt/repo/.,/mnt/repo/addons", "-D", "/var/lib/odoo", "-p", "8069",
    ]


def test_server_command_passes_a_given_password_logfile_and_extra_options():
    command = server_command(**COMMON, db_password="s3cret", http_port=18069,
                             logfile="/var/log/odoo/odoo.log", extra=["--workers", "2"])
    assert command[command.index("-w") + 1] == "s3cret"
    assert command[command.index("-p") + 1] == "18069"
    assert command[command.index("--logfile") + 1] == "/var/log/odoo/odoo.log"
    assert command[-2:] == ["--workers", "2"]


def test_install_command_installs_tests_and_stops():
    command = install_command(**COMMON, db_password=None, modules=["demo_a", "demo_b"], demo=False,
                              test_enable=True, test_tags="/demo_b")
    assert command[:2] == ["python3", "/opt/odoo/odoo-bin"]
    assert command[command.index("-i") + 1] == "demo_a,demo_b"
    assert "--stop-after-init" in command
    assert "--without-demo=all" in command
    assert "--test-enable" in command
    assert command[command.index("--test-tags") + 1] == "/demo_b"
    assert "-w" not in command


def test_install_command_with_demo_and_without_tests():
    command = install_command(**COMMON, db_password=None, modules=["demo_ok"], demo=True, test_enable=False)
    assert "--without-demo=all" not in command
    assert "--test-enable" not in command and "--test-tags" not in command


def test_update_command_updates_and_stops():
    command = update_command(**COMMON, db_password=None, modules=["demo_ok"], test_enable=True)
    assert command[command.index("-u") + 1] == "demo_ok"
    assert "--stop-after-init" in command and "--test-enable" in command
    assert "-i" not in command
