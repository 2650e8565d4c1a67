"""The tree a backup hands to restic: hard links to the data dir's files, made without
following any link a hostile container may have put there."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.jobs import backup_content as content


def make_source(tmp_path: Path) -> content.Source:
    data, build = tmp_path / "data", tmp_path / "build"
    files = data / "filestore" / "db" / "ab"
    files.mkdir(parents=True)
    (files / "ab12").write_bytes(b"an attachment")
    (data / "sessions" / "x1").mkdir(parents=True)
    (data / "sessions" / "x1" / "sid").write_text("session")
    (build / "logs").mkdir(parents=True)
    (build / "logs" / "install.log").write_text("installed")
    return content.Source(project={}, branch={}, build={}, database="db", data_dir=data,
                          build_dir=build)


def test_files_are_staged_as_hard_links_in_the_snapshot_layout(tmp_path):
    source = make_source(tmp_path)
    staged = content.stage(source, tmp_path / "work")
    copy = tmp_path / "work" / "filestore" / "ab" / "ab12"
    assert copy.read_bytes() == b"an attachment"
    assert copy.stat().st_ino == (source.data_dir / "filestore/db/ab/ab12").stat().st_ino
    assert (tmp_path / "work" / "sessions" / "x1" / "sid").read_text() == "session"
    assert (tmp_path / "work" / "logs" / "install.log").read_text() == "installed"
    assert not (tmp_path / "work" / "server-log").exists()  # none yet: left out
    assert staged.files == {"filestore": 1, "sessions": 1, "logs": 1}
    assert staged.bytes["filestore"] == len(b"an attachment")
    assert os.stat(tmp_path / "work").st_mode & 0o777 == 0o700


def test_a_link_to_a_host_folder_is_staged_as_a_link_and_never_entered(tmp_path):
    source = make_source(tmp_path)
    secret = tmp_path / "host"
    secret.mkdir()
    (secret / "shadow").write_text("root's secret")
    os.symlink(secret, source.data_dir / "filestore" / "db" / "zz")
    os.symlink(secret / "shadow", source.data_dir / "filestore" / "db" / "ab" / "cd34")
    staged = content.stage(source, tmp_path / "work")
    link = tmp_path / "work" / "filestore" / "zz"
    assert link.is_symlink() and os.readlink(link) == str(secret)
    assert os.readlink(tmp_path / "work" / "filestore" / "ab" / "cd34") == str(secret / "shadow")
    assert staged.files["filestore"] == 1  # the one real file
    walked = [p for p in (tmp_path / "work").rglob("*") if not p.is_symlink()]
    assert all("shadow" not in p.name for p in walked)


def test_a_data_folder_replaced_by_a_link_is_left_out_with_a_warning(tmp_path):
    source = make_source(tmp_path)
    secret = tmp_path / "host"
    (secret / "x1").mkdir(parents=True)
    (secret / "x1" / "key").write_text("root's secret")
    sessions = source.data_dir / "sessions"
    os.rename(sessions, tmp_path / "moved")
    os.symlink(secret, sessions)
    staged = content.stage(source, tmp_path / "work")
    assert not (tmp_path / "work" / "sessions").exists()
    assert any("sessions" in warning for warning in staged.warnings)
    # and a filestore reached through a linked parent folder is not entered either
    os.rename(source.data_dir / "filestore", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", source.data_dir / "filestore")
    staged = content.stage(source, tmp_path / "work2")
    assert not (tmp_path / "work2" / "filestore").exists()
    assert "filestore" not in staged.files
