"""Production's pre-update snapshot lives where no container writes, and a link a
container planted on the way to the live filestore stops the files going back."""

import pytest

from appliance import config as config_mod
from appliance import layout
from appliance.runtime import filestore
from appliance.runtime.buildfs import UnsafePath


def test_the_snapshot_s_files_are_beside_production_s_data_dir_not_in_it(tmp_path):
    cfg = config_mod.Config()
    cfg.paths.data_dir = tmp_path
    snap = layout.production_snapshot(cfg, "acme", 7)
    assert not snap.files.is_relative_to(snap.data_dir)
    assert snap.files.parent.parent == snap.data_dir.parent
    assert snap.live_files.is_relative_to(snap.data_dir)


def test_a_link_on_the_way_to_the_live_filestore_is_refused(tmp_path):
    data = tmp_path / "production"
    (tmp_path / "host-folder").mkdir()
    data.mkdir()
    (data / "filestore").symlink_to(tmp_path / "host-folder")
    with pytest.raises(UnsafePath, match="link"):
        filestore.check_no_link(data, data / "filestore" / "db")


def test_plain_folders_and_a_missing_filestore_pass(tmp_path):
    data = tmp_path / "production"
    (data / "filestore" / "db").mkdir(parents=True)
    filestore.check_no_link(data, data / "filestore" / "db")
    filestore.check_no_link(data, data / "filestore" / "other")
