"""The restic adapter against the real restic, on repositories in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from appliance.errors import BackupError
from appliance.jobs import backup
from appliance.runtime.restic import Repository, Restic
from appliance.services import Services

pytestmark = [
    pytest.mark.slow,  # real restic repositories, a process each command
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed"),
]


@pytest.fixture
def repo(tmp_path) -> Restic:
    (tmp_path / "password").write_text("a password nobody types\n")
    made = Restic(Repository(str(tmp_path / "repo"), tmp_path / "password"),
                  cache_dir=tmp_path / "cache")
    assert made.init() is True
    return made


def test_init_makes_the_repository_once(repo):
    assert repo.exists() and repo.init() is False


def test_a_stream_backed_up_dumps_back_byte_for_byte_with_its_tags_and_time(repo):
    data = [os.urandom(300_000), b"tail"]
    moment = datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc)
    summary = repo.backup_stdin(iter(data), "database.dump", ["project=a", "part=dump"],
                                time=moment)
    assert summary.total_bytes == 300_004 and summary.data_added >= 300_004
    (snap,) = repo.snapshots(["project=a"])
    assert snap.id.startswith(summary.snapshot_id) and snap.time == moment
    assert snap.tag("part") == "dump" and snap.tag("missing") is None
    with repo.dump(snap.id, "/database.dump") as stream:
        assert stream.read() == b"".join(data)


def test_a_stream_that_fails_midway_leaves_no_snapshot_and_no_lock(repo):
    def failing():
        yield os.urandom(2_000_000)
        raise BackupError("pg_dump of x failed")
    with pytest.raises(BackupError, match="pg_dump"):
        repo.backup_stdin(failing(), "database.dump", ["project=b"])
    assert repo.snapshots(["project=b"]) == [] and repo.locks() == []


def test_restore_extracts_into_a_new_folder_only(repo, tmp_path):
    src = tmp_path / "src"
    (src / "filestore" / "ab").mkdir(parents=True)
    (src / "filestore" / "ab" / "ab12").write_bytes(b"file")
    (src / "manifest.json").write_text("{}")
    summary = repo.backup_paths(["filestore", "manifest.json"], src, ["project=c"])
    repo.restore(summary.snapshot_id, tmp_path / "out", include=["/filestore"])
    assert (tmp_path / "out" / "filestore" / "ab" / "ab12").read_bytes() == b"file"
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(FileExistsError):
        repo.restore(summary.snapshot_id, tmp_path / "out")
    assert [n.path for n in repo.ls(summary.snapshot_id)] == [
        "/filestore", "/filestore/ab", "/filestore/ab/ab12", "/manifest.json"]


def test_a_wrong_password_is_restic_s_own_message(repo, tmp_path):
    (tmp_path / "wrong").write_text("not it\n")
    other = Restic(Repository(repo.repo.location, tmp_path / "wrong"))
    with pytest.raises(BackupError, match="wrong password"):
        other.snapshots()


def test_the_password_is_never_on_a_command_line(repo, monkeypatch):
    seen = []
    real = subprocess.Popen

    def spy(command, *args, **kwargs):
        seen.append(list(command))
        return real(command, *args, **kwargs)
    monkeypatch.setattr(subprocess, "Popen", spy)
    repo.snapshots()
    assert seen and not any("a password nobody types" in part for c in seen for part in c)
    assert "--password-file" in seen[0]


def test_a_copy_to_another_repository_brings_the_snapshots(repo, tmp_path):
    repo.backup_stdin([b"x" * 1000], "database.dump", ["project=d"])
    (tmp_path / "other-password").write_text("another\n")
    target = Restic(Repository(str(tmp_path / "target"), tmp_path / "other-password"))
    target.init(chunker_params_from=repo)
    repo.copy_to(target)
    assert [s.tags for s in target.snapshots()] == [("project=d",)]
    assert "no errors were found" in target.check("100%")


def stale_lock(repo) -> None:
    """A lock left by a restic killed mid-backup."""
    process = subprocess.Popen(repo._command(["backup", "--stdin"]), env=repo._env(),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = datetime.now().timestamp() + 20
    while not repo.locks() and datetime.now().timestamp() < deadline:
        pass
    process.kill()
    process.wait()
    assert len(repo.locks()) == 1


def test_a_stale_lock_is_removed_by_unlock(repo):
    stale_lock(repo)
    repo.unlock()
    assert repo.locks() == []


def test_a_stale_lock_does_not_stop_forget_which_waits_for_locks(repo):
    summary = repo.backup_stdin([b"x"], "database.dump", ["project=f"])
    stale_lock(repo)
    with pytest.raises(BackupError, match="already locked"):
        repo.forget([summary.snapshot_id])  # no patience: restic's own refusal
    repo.lock_wait_seconds = 30
    repo.forget([summary.snapshot_id])
    assert repo.snapshots(["project=f"]) == [] and repo.locks() == []


def test_the_appliance_repository_refuses_a_lost_password(config, db):
    svc = Services(config, db)
    backup.repository(svc)
    path = backup.password_path(config)
    assert path.stat().st_mode & 0o777 == 0o600
    path.unlink()
    svc.extra.clear()
    with pytest.raises(BackupError, match="put back the copy you kept"):
        backup.repository(svc)
    assert not path.exists()


def test_missing_restic_is_a_clear_error(tmp_path):
    repo = Restic(Repository(str(tmp_path / "r"), Path("/nonexistent")), binary="no-restic-here")
    with pytest.raises(BackupError, match="install the restic package"):
        repo.exists()


def test_files_staged_again_as_new_hard_links_are_not_read_again(repo, tmp_path):
    from appliance.jobs import backup_content as content
    data = tmp_path / "data"
    (data / "filestore" / "db" / "ab").mkdir(parents=True)
    for name in ("ab01", "ab02"):
        (data / "filestore" / "db" / "ab" / name).write_bytes(os.urandom(50_000))
    source = content.Source(project={}, branch={}, build={}, database="db", data_dir=data,
                            build_dir=tmp_path / "build")
    content.stage(source, tmp_path / "work1")
    first = repo.backup_paths(["filestore"], tmp_path / "work1", ["project=e"])
    (data / "filestore" / "db" / "ab" / "ab03").write_bytes(os.urandom(50_000))
    content.stage(source, tmp_path / "work2")  # other folder, new links: new ctimes
    second = repo.backup_paths(["filestore"], tmp_path / "work2", ["project=e"],
                               parent=first.snapshot_id)
    assert second.unmodified_files == 2 and second.total_files == 3
    assert 50_000 <= second.data_added < 60_000


def test_a_tag_holding_a_comma_is_refused_before_restic_runs(repo):
    with pytest.raises(ValueError, match="comma"):
        repo.backup_stdin([b"x"], "database.dump", ["project=a,kind=daily"])
    assert repo.snapshots() == []
