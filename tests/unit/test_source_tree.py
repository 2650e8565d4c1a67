"""The editor's path rules and file access in a build's source tree (a real folder in
tmp_path): what a path may be, links and special files never followed or opened, writes
atomic and keeping the file's mode, and the [editor] setting that caps what is opened."""

from __future__ import annotations

import os
import stat

import pytest

from appliance import config as config_mod
from appliance.errors import NotFound
from appliance.runtime import source_tree
from appliance.runtime.source_tree import BadPath, Changed

LIMIT = 1000


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "build" / "src"
    (root / "shop" / "views").mkdir(parents=True)
    (root / "shop" / "__manifest__.py").write_text("{'name': 'Shop'}\n")
    (root / "shop" / "models.py").write_text("price = 1\n")
    (root / "shop" / "views" / "shop.xml").write_text("<odoo/>\n")
    return root


@pytest.fixture
def secret(tmp_path):
    """A file outside the tree that nothing may read or write through it."""
    path = tmp_path / "build" / "odoo.conf"
    path.write_text("db_password = secret\n")
    return path


@pytest.mark.parametrize("path, parts", [
    ("", ()), (None, ()), ("shop", ("shop",)), ("shop/models.py", ("shop", "models.py")),
    ("shop/views/shop.xml", ("shop", "views", "shop.xml")), (".github/x.yml", (".github", "x.yml")),
    ("i18n/fr_BE.po", ("i18n", "fr_BE.po")), ("caf\u00e9/menu.py", ("caf\u00e9", "menu.py")),
    ("a..b/c...d", ("a..b", "c...d")),
])
def test_a_plain_relative_path_is_taken_apart_into_its_names(path, parts):
    assert source_tree.parse(path) == parts


@pytest.mark.parametrize("path, why", [
    ("..", "'..'"), ("../odoo.conf", "'..'"), ("shop/../../odoo.conf", "'..'"),
    ("shop/..", "'..'"), ("./shop", "'.'"), ("shop/./models.py", "'.'"),
    ("shop//models.py", "empty"), ("shop/", "empty"),
    ("/etc/passwd", "absolute"), ("//etc/passwd", "absolute"),
    ("..\\odoo.conf", "backslash"), ("shop\\..\\..\\odoo.conf", "backslash"),
    ("%2e%2e/odoo.conf", "encoded"), ("%252e%252e%252fodoo.conf", "encoded"),
    ("shop%2fmodels.py", "encoded"), ("..%c0%af", "encoded"), ("%00", "encoded"),
    ("shop/models.py\0.png", "control"), ("shop\n/models.py", "control"),
    ("shop/\x7fmodels.py", "control"), ("\udcff/models.py", "valid text"),
    ("a/" * 2048 + "b", "at most 4095 bytes"), ("x" * 256, "at most 255 bytes"),
])
def test_anything_but_a_plain_relative_path_is_refused_with_its_reason(path, why):
    with pytest.raises(BadPath, match=why):
        source_tree.parse(path)


def test_a_folder_is_listed_folders_first_with_links_shown_as_links(tree, secret):
    os.symlink(secret, tree / "shop" / "aaa-link")
    entries, cut = source_tree.list_folder(tree, ("shop",))
    assert [(e.name, e.kind) for e in entries] == [
        ("views", "folder"), ("__manifest__.py", "file"), ("aaa-link", "link"),
        ("models.py", "file")]
    assert entries[-1].path == "shop/models.py" and not cut


def test_a_long_folder_is_cut(tree, monkeypatch):
    monkeypatch.setattr(source_tree, "MAX_LISTED", 2)
    entries, cut = source_tree.list_folder(tree, ("shop",))
    assert len(entries) == 2 and cut


def test_a_text_file_is_read_with_the_digest_a_save_must_find(tree):
    view = source_tree.read(tree, ("shop", "models.py"), LIMIT)
    assert (view.kind, view.text, view.size) == ("text", "price = 1\n", 10)
    assert len(view.digest) == 64


def test_big_and_binary_files_are_not_read_as_text(tree):
    (tree / "big.csv").write_text("x" * (LIMIT + 1))
    (tree / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    (tree / "latin1.txt").write_bytes("caf\u00e9".encode("latin-1"))
    assert source_tree.read(tree, ("big.csv",), LIMIT).kind == "big"
    assert source_tree.read(tree, ("big.csv",), LIMIT).text is None
    assert source_tree.read(tree, ("logo.png",), LIMIT).kind == "binary"
    assert source_tree.read(tree, ("latin1.txt",), LIMIT).kind == "binary"


def test_a_link_in_place_of_a_file_is_never_read_or_written_through(tree, secret):
    os.symlink(secret, tree / "shop" / "models.py.link")
    os.symlink("../../odoo.conf", tree / "shop" / "relative")
    for name in ("models.py.link", "relative"):
        with pytest.raises(BadPath, match="symbolic link"):
            source_tree.read(tree, ("shop", name), LIMIT)
        with pytest.raises(BadPath, match="symbolic link"):
            source_tree.write(tree, ("shop", name), b"owned", None)
    assert secret.read_text() == "db_password = secret\n"


def test_a_link_in_place_of_a_folder_on_the_way_is_refused(tree, secret):
    os.symlink(secret.parent, tree / "up")
    os.symlink("..", tree / "shop" / "parent")
    for parts in (("up", "odoo.conf"), ("shop", "parent", "shop", "models.py")):
        with pytest.raises(BadPath, match="symbolic link or a file on the way"):
            source_tree.read(tree, parts, LIMIT)
        with pytest.raises(BadPath):
            source_tree.list_folder(tree, parts[:-1])
        with pytest.raises(BadPath):
            source_tree.write(tree, parts, b"owned", None)
    assert secret.read_text() == "db_password = secret\n"


def test_a_hard_link_to_a_file_outside_is_neither_read_nor_written(tree, secret):
    os.link(secret, tree / "shop" / "conf.py")
    with pytest.raises(BadPath, match="hard links"):
        source_tree.read(tree, ("shop", "conf.py"), LIMIT)
    with pytest.raises(BadPath, match="hard links"):
        source_tree.write(tree, ("shop", "conf.py"), b"owned", None)
    assert secret.read_text() == "db_password = secret\n"


def test_a_fifo_or_a_folder_is_not_opened_as_a_file_and_nothing_blocks(tree):
    os.mkfifo(tree / "shop" / "pipe")
    with pytest.raises(BadPath, match="not a regular file"):
        source_tree.read(tree, ("shop", "pipe"), LIMIT)
    with pytest.raises(BadPath, match="a folder"):
        source_tree.read(tree, ("shop", "views"), LIMIT)
    assert source_tree.kind_of(tree, ("shop", "pipe")) == "other"


def test_a_missing_file_or_tree_is_not_found_and_writes_create_nothing(tree):
    with pytest.raises(NotFound):
        source_tree.read(tree, ("shop", "nope.py"), LIMIT)
    with pytest.raises(NotFound):
        source_tree.write(tree, ("shop", "nope.py"), b"new", None)
    with pytest.raises(NotFound, match="source is gone"):
        source_tree.list_folder(tree.parent / "gone", ())
    assert not (tree / "shop" / "nope.py").exists()


def test_a_write_replaces_the_file_atomically_keeping_mode_and_leaving_no_temporary(tree):
    path = tree / "shop" / "models.py"
    os.chmod(path, 0o750)
    before = os.stat(path)
    digest = source_tree.read(tree, ("shop", "models.py"), LIMIT).digest
    new = source_tree.write(tree, ("shop", "models.py"), b"price = 2\n", digest)
    after = os.stat(path)
    assert path.read_bytes() == b"price = 2\n"
    assert stat.S_IMODE(after.st_mode) == 0o750 and after.st_gid == before.st_gid
    assert after.st_ino != before.st_ino  # a new file renamed over the old one
    assert new == source_tree.read(tree, ("shop", "models.py"), LIMIT).digest
    assert sorted(os.listdir(tree / "shop")) == ["__manifest__.py", "models.py", "views"]


def test_a_write_over_a_file_changed_since_it_was_read_is_refused(tree):
    digest = source_tree.read(tree, ("shop", "models.py"), LIMIT).digest
    (tree / "shop" / "models.py").write_text("price = 3\n")
    with pytest.raises(Changed, match="changed since you opened it"):
        source_tree.write(tree, ("shop", "models.py"), b"price = 2\n", digest)
    assert (tree / "shop" / "models.py").read_text() == "price = 3\n"


def test_a_failed_write_leaves_the_file_and_no_temporary(tree, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(source_tree.os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        source_tree.write(tree, ("shop", "models.py"), b"price = 2\n", None)
    assert (tree / "shop" / "models.py").read_text() == "price = 1\n"
    assert not [n for n in os.listdir(tree / "shop") if n.startswith(".editor-")]


def test_changed_files_are_those_whose_bytes_differ_from_gits(tree):
    tracked = [("shop/models.py", 10, source_tree.git_blob_id(b"price = 1\n")),
               ("shop/__manifest__.py", 17, source_tree.git_blob_id(b"{'name': 'Shop'}\n")),
               ("shop/views/shop.xml", 8, source_tree.git_blob_id(b"<odoo/>\n")),
               ("shop/gone.py", 3, source_tree.git_blob_id(b"x\n\n"))]
    assert source_tree.changed_files(tree, tracked, LIMIT) == {}
    (tree / "shop" / "models.py").write_text("price = 7\n")  # same size, other bytes
    (tree / "shop" / "views" / "shop.xml").write_text("<odoo></odoo>\n")
    assert source_tree.changed_files(tree, tracked, LIMIT) == {
        "shop/models.py": b"price = 7\n", "shop/views/shop.xml": b"<odoo></odoo>\n"}


def test_git_blob_ids_are_gits():
    # what `git hash-object` prints for them
    assert source_tree.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert source_tree.git_blob_id(b"price = 1\n") == "205a5effd02bc17810b13d50da15e012db174fa9"


def test_the_editor_file_cap_is_read_from_the_config_file_and_the_environment(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text("[editor]\nmax_file_bytes = 2048\n")
    assert config_mod.load(path, env={}).editor.max_file_bytes == 2048
    assert config_mod.load(path, env={"APPLIANCE_EDITOR_MAX_FILE_BYTES": "10"}
                           ).editor.max_file_bytes == 10
    assert config_mod.Config().editor.max_file_bytes == 1024 * 1024
