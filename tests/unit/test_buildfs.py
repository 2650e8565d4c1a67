"""Files in build folders are opened without following links and only when plain files."""

import os

import pytest

from appliance.runtime import buildfs


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "build"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "install.log").write_text("installed\n")
    return folder


@pytest.fixture
def host_file(tmp_path):
    path = tmp_path / "host-secret"
    path.write_text("secret\n")
    return path


def test_a_plain_file_is_read_and_appended(root):
    with buildfs.open_append(root, "logs/install.log") as handle:
        handle.write("more\n")
    assert buildfs.read_text(root, "logs/install.log") == "installed\nmore\n"


def test_a_link_in_place_of_the_file_is_refused_for_reading_and_writing(root, host_file):
    os.remove(root / "logs" / "install.log")
    os.symlink(host_file, root / "logs" / "install.log")
    with pytest.raises(buildfs.UnsafePath):
        buildfs.open_read(root, "logs/install.log")
    with pytest.raises(buildfs.UnsafePath):
        buildfs.open_append(root, "logs/install.log")
    assert host_file.read_text() == "secret\n"
    assert not buildfs.exists(root, "logs/install.log")


def test_a_dangling_link_is_never_created_through(root, tmp_path):
    target = tmp_path / "would-be-created"
    os.symlink(target, root / "logs" / "update.log")
    with pytest.raises(buildfs.UnsafePath):
        buildfs.open_append(root, "logs/update.log")
    assert not target.exists()


def test_a_link_in_place_of_a_folder_on_the_way_is_refused(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "odoo.log").write_text("secret\n")
    os.symlink(elsewhere, root / "server-log")
    with pytest.raises(buildfs.UnsafePath):
        buildfs.read_text(root, "server-log/odoo.log")


def test_a_fifo_is_refused_without_blocking(root):
    os.mkfifo(root / "logs" / "pip.log")
    with pytest.raises(buildfs.UnsafePath, match="not a regular file"):
        buildfs.open_read(root, "logs/pip.log")


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "logs/../../x", "logs/.."])
def test_paths_that_leave_the_folder_are_refused(root, relative):
    with pytest.raises(buildfs.UnsafePath):
        buildfs.open_read(root, relative)


def test_a_missing_file_reads_as_empty(root):
    assert buildfs.read_text(root, "logs/neutralize.log") == ""


def test_a_folder_made_for_a_container_refuses_a_link_in_its_place(tmp_path):
    os.symlink(tmp_path, tmp_path / "data")
    with pytest.raises(buildfs.UnsafePath):
        buildfs.make_folder(tmp_path / "data", None, 0o700)
    buildfs.make_folder(tmp_path / "fresh", None, 0o700)
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
