"""Copies of the backups off the box, with the real restic: to a folder (another disk), to
an sftp: target served by an sshd this test starts on loopback, and to targets that are
down, reported, then caught up by the retry job. The backups are made directly in the
appliance's repository (a dump and a files snapshot each, as jobs/backup.py makes them),
so no Odoo is needed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.errors import UserError
from appliance.jobs import backup, backup_copies
from appliance.runtime.restic import Repository, Restic
from appliance.services import Services
from appliance.store import backups as backups_store
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from tests.integration.harness import free_port

pytestmark = [
    pytest.mark.slow,  # restic repositories and an sshd
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed"),
]

PASSWORD = "target password nobody types"
SSHD = "/usr/sbin/sshd"


@pytest.fixture
def svc(config, db):
    return Services(config, db)


def make_backup(svc, name: str = "shop", data: bytes | None = None, at=None) -> dict:
    """A done backup of project `name` in the appliance's repository."""
    with svc.db.transaction() as conn:
        try:
            proj = projects_store.get_project(conn, name)
        except UserError:
            proj = projects_store.create_project(conn, name, "18.0", "appl_test_")
        branch, _ = projects_store.ensure_branch(conn, proj, "main")
        build = builds_store.enqueue(conn, project=proj, branch=branch, commit="c" * 40)
        row = backups_store.start(conn, project=proj, branch=branch, build=build,
                                  kind="manual", started_at=at)
    repo = backup.repository(svc)
    tags = [f"project={name}", "kind=manual", f"backup={row['id']}"]
    dump = repo.backup_stdin([data or os.urandom(200_000)], "database.dump",
                             tags + ["part=dump"], time=at)
    work = svc.config.paths.data_dir / f"files-{row['id']}"
    (work / "filestore").mkdir(parents=True)
    (work / "filestore" / "scan").write_bytes(b"an invoice scan %d" % row["id"])
    files = repo.backup_paths(["filestore"], work, tags + ["part=files"], time=at)
    with svc.db.transaction() as conn:
        return backups_store.finish(conn, row["id"], "done", dump_snapshot=dump.snapshot_id,
                                    files_snapshot=files.snapshot_id)


def target_repo(location: str, password_file: Path, options=()) -> Restic:
    return backup_copies.TargetRestic(Repository(location, password_file), list(options))


def status(svc, name: str) -> dict:
    (found,) = [s for s in backup_copies.status(svc) if s["name"] == name]
    return found


def test_a_backup_is_copied_to_a_folder_target_and_restores_from_there(svc, tmp_path):
    data = os.urandom(300_000)
    first = make_backup(svc, data=data)
    backup_copies.add(svc, "disk", str(tmp_path / "disk"), PASSWORD)
    assert status(svc, "disk")["state"] == "pending"
    second = make_backup(svc)
    backup_copies.after_backup(svc, second)  # what backup.create does once it is done

    now = status(svc, "disk")
    assert (now["state"], now["last_copied_backup"], now["behind"]) == ("ok", second["id"], 0)
    assert now["kind"] == "folder" and now["last_error"] == ""
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    copy = target_repo(str(tmp_path / "disk"), tmp_path / "pw")
    copied = {(s.tag("backup"), s.tag("part")) for s in copy.snapshots()}
    assert copied == {(str(b["id"]), part) for b in (first, second)
                      for part in ("dump", "files")}
    (dump,) = copy.snapshots([f"backup={first['id']}", "part=dump"])
    with copy.dump(dump.id, "/database.dump") as stream:
        assert stream.read() == data
    (files,) = copy.snapshots([f"backup={first['id']}", "part=files"])
    copy.restore(files.id, tmp_path / "restored")
    assert (tmp_path / "restored" / "filestore" / "scan").read_bytes() == \
        b"an invoice scan %d" % first["id"]


def test_a_target_s_secrets_are_files_of_its_own_only(svc, tmp_path):
    backup_copies.add(svc, "s3ish", str(tmp_path / "disk"), PASSWORD,
                      env={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                           "AWS_SECRET_ACCESS_KEY": "secret-key-nobody-types"})
    folder = backup_copies.target_dir(svc.config, "s3ish")
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("password", "env", "known_hosts"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    assert (folder / "password").read_text() == PASSWORD + "\n"
    with svc.db.transaction() as conn:
        row = conn.execute("SELECT * FROM backup_targets WHERE name = 's3ish'").fetchone()
    assert PASSWORD not in str(row) and "secret-key" not in str(row)
    backup_copies.remove(svc, "s3ish")
    assert not folder.exists() and backup_copies.status(svc) == []


def test_a_wrong_location_or_name_is_refused_and_nothing_is_kept(svc, tmp_path):
    with pytest.raises(UserError, match="absolute path"):
        backup_copies.add(svc, "rel", "relative/folder", PASSWORD)
    with pytest.raises(UserError, match="password"):
        backup_copies.add(svc, "pw", "rest:https://user:secret@host/repo", PASSWORD)
    with pytest.raises(UserError, match="own backups folder"):
        backup_copies.add(svc, "same", str(backup.backups_dir(svc.config) / "x"), PASSWORD)
    with pytest.raises(UserError, match="invalid target name"):
        backup_copies.add(svc, "../up", str(tmp_path / "d"), PASSWORD)
    with pytest.raises(UserError, match="ssh options"):
        backup_copies.add(svc, "disk", str(tmp_path / "d"), PASSWORD, ssh_port=22)
    assert backup_copies.status(svc) == []
    assert not backup_copies.target_dir(svc.config, "disk").exists()


def test_a_folder_target_whose_disk_is_gone_is_reported_then_caught_up_by_the_retry_job(
        svc, tmp_path, caplog):
    disk = tmp_path / "disk"
    backup_copies.add(svc, "disk", str(disk), PASSWORD)
    disk.rename(tmp_path / "unmounted")
    disk.mkdir()  # the empty mount point
    made = make_backup(svc)
    with caplog.at_level(logging.WARNING):
        backup_copies.after_backup(svc, made)  # never raises
    failing = status(svc, "disk")
    assert failing["state"] == "failing" and failing["failing_since"] is not None
    assert "no repository there: is the disk mounted" in failing["last_error"]
    assert failing["last_copied_backup"] is None and failing["behind"] == 1
    assert "copy to target disk" in caplog.text
    assert list(disk.iterdir()) == []  # no new repository made on the mount point

    disk.rmdir()
    (tmp_path / "unmounted").rename(disk)
    backup_copies.copy_pending(svc)  # the daemon's retry job
    back = status(svc, "disk")
    assert (back["state"], back["last_copied_backup"], back["last_error"]) == \
        ("ok", made["id"], "")
    assert back["failing_since"] is None and back["behind"] == 0


def test_retention_forgets_on_the_targets_what_the_repository_no_longer_keeps(
        svc, tmp_path):
    backup_copies.add(svc, "disk", str(tmp_path / "disk"), PASSWORD)
    make_backup(svc, at=datetime.now(timezone.utc) - timedelta(days=30))  # expired
    new = make_backup(svc)
    backup_copies.copy_pending(svc)
    with svc.db.transaction() as conn:
        proj = projects_store.get_project(conn, "shop")
    backup.prune(svc, proj, free_space=False)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    left = {s.tag("backup") for s in target_repo(str(tmp_path / "disk"),
                                                 tmp_path / "pw").snapshots()}
    assert left == {str(new["id"])}


# -- sftp, on an sshd of the test's own ---------------------------------------------------

class Sshd:
    """An sshd on 127.0.0.1 with its own host key and one authorized key, in a folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()
        self.port = free_port()
        self.key = folder / "client_key"
        for key in (folder / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True)
        (folder / "authorized_keys").write_bytes(self.key.with_suffix(".pub").read_bytes())
        (folder / "sshd_config").write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {folder / 'host_key'}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {folder / 'authorized_keys'}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
""")
        self.process = None

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")],
                                        stderr=open(self.folder / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{self.port}"],
                                   capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def sshd(tmp_path):
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (scripts/setup-host.sh installs it)")
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


def user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def test_an_sftp_target_on_loopback_gets_the_copies_and_a_stopped_server_is_retried(
        svc, tmp_path, sshd, caplog, monkeypatch):
    location = f"sftp:{user()}@127.0.0.1:{tmp_path / 'remote' / 'repo'}"
    (tmp_path / "remote").mkdir()
    commands = []
    real_popen = subprocess.Popen

    def spy(command, *args, **kwargs):
        commands.append((list(command), dict(kwargs.get("env") or {})))
        return real_popen(command, *args, **kwargs)
    monkeypatch.setattr(subprocess, "Popen", spy)
    caplog.set_level(logging.DEBUG)
    backup_copies.add(svc, "offsite", location, PASSWORD, ssh_port=sshd.port,
                      ssh_identity=sshd.key.read_bytes(),
                      env={"AWS_SECRET_ACCESS_KEY": "secret-key-nobody-types"})
    first = make_backup(svc)
    backup_copies.after_backup(svc, first)
    assert status(svc, "offsite")["state"] == "ok"
    assert (tmp_path / "remote" / "repo" / "config").exists()

    sshd.stop()
    second = make_backup(svc)
    backup_copies.after_backup(svc, second)
    down = status(svc, "offsite")
    assert down["state"] == "failing" and down["last_copied_backup"] == first["id"]
    assert down["kind"] == "sftp" and down["last_error"]

    sshd.start()
    backup_copies.copy_pending(svc)
    assert status(svc, "offsite")["last_copied_backup"] == second["id"]
    assert status(svc, "offsite")["state"] == "ok"

    # The secrets: never in an argv, never logged; the credentials reach restic's
    # environment only (and none of ours).
    key = sshd.key.read_text()
    argv = " ".join(part for command, _ in commands for part in command)
    assert commands and PASSWORD not in argv and "secret-key" not in argv and key not in argv
    assert PASSWORD not in caplog.text and "secret-key" not in caplog.text
    restic_envs = [env for command, env in commands if "restic" in " ".join(command[:4])
                   and "offsite" in " ".join(command)]
    assert restic_envs and all(env.get("AWS_SECRET_ACCESS_KEY") == "secret-key-nobody-types"
                               for env in restic_envs)
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ


def test_the_cli_adds_lists_retries_and_removes_a_target_without_showing_its_secrets(
        svc, tmp_path):
    import json
    from types import SimpleNamespace

    from click.testing import CliRunner

    from appliance.cli_backup_targets import target
    obj = SimpleNamespace(services=svc)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    make_backup(svc)
    runner = CliRunner()
    added = runner.invoke(target, ["add", "usb", str(tmp_path / "usb"), "--password-file",
                                   str(tmp_path / "pw"), "--json"], obj=obj)
    assert added.exit_code == 0, added.output
    (shown,) = json.loads(added.output)
    assert (shown["name"], shown["state"], shown["behind"]) == ("usb", "ok", 0)
    listed = runner.invoke(target, ["list"], obj=obj)
    assert listed.exit_code == 0 and "usb" in listed.output and "\tok\t" in listed.output
    assert PASSWORD not in added.output + listed.output
    (tmp_path / "usb").rename(tmp_path / "usb-away")
    retried = runner.invoke(target, ["retry", "usb"], obj=obj)
    assert retried.exit_code == 1 and "failing" in retried.output
    removed = runner.invoke(target, ["remove", "usb", "--yes"], obj=obj)
    assert removed.exit_code == 0 and backup_copies.status(svc) == []
