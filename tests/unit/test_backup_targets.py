"""Pure decisions of copy targets and of the backup checks' schedule."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance import config as config_mod
from appliance.cli_backup_targets import _env_lines
from appliance.daemon import start_scheduler
from appliance.errors import UserError
from appliance.jobs import backup_copies


def test_sftp_hosts_are_read_from_both_of_restic_s_forms():
    assert backup_copies.sftp_host("sftp:backup@nas.lan:/srv/restic") == "backup@nas.lan"
    assert backup_copies.sftp_host("sftp:nas.lan:repo") == "nas.lan"
    assert backup_copies.sftp_host("sftp://backup@nas.lan:2222//srv/restic") == "backup@nas.lan"
    assert backup_copies.sftp_host("sftp://nas.lan//srv/restic") == "nas.lan"
    with pytest.raises(UserError, match="sftp:user@host:/path"):
        backup_copies.sftp_host("sftp:/no/host")


def test_an_sftp_target_s_ssh_never_prompts_and_uses_its_own_key_port_and_known_hosts():
    row = {"location": "sftp:backup@nas.lan:/srv/restic", "options": {"ssh_port": 2222}}
    folder = Path("/data/backups/targets/nas")
    (option,) = backup_copies._options(row, folder)
    key, _, command = option.partition("=")
    words = shlex.split(command)
    assert key == "sftp.command" and words[0] == "ssh"
    assert words[-3:] == ["backup@nas.lan", "-s", "sftp"]
    assert "BatchMode=yes" in words and "StrictHostKeyChecking=accept-new" in words
    assert f"UserKnownHostsFile={folder / 'known_hosts'}" in words
    assert words[words.index("-p") + 1] == "2222"
    assert "-i" not in words  # no key of its own: the daemon user's ssh config decides
    assert backup_copies._options({"location": "/mnt/disk", "options": {}}, folder) == []


def test_locations_are_a_folder_or_one_of_restic_s_remotes():
    cfg = config_mod.Config()
    cfg.paths.data_dir = Path("/var/lib/appliance")
    assert backup_copies.check_location(cfg, " /mnt/usb/restic ") == "/mnt/usb/restic"
    for remote in ("sftp:u@h:/r", "s3:s3.amazonaws.com/bucket/x", "rest:https://h:8000/r"):
        assert backup_copies.check_location(cfg, remote) == remote
    for wrong, message in (("ftp:host/x", "unknown kind"), ("mnt/usb", "absolute"),
                           ("/var/lib/appliance/backups/copy", "own backups folder"),
                           ("rest:https://u:secret@h/r", "password"), ("", "needs a location"),
                           ("/mnt/a\nb", "needs a location")):
        with pytest.raises(UserError, match=message):
            backup_copies.check_location(cfg, wrong)


def test_an_env_file_gives_name_value_pairs_and_refuses_other_lines():
    assert _env_lines(b"# keys\nexport AWS_ACCESS_KEY_ID=AK\nAWS_SECRET_ACCESS_KEY='s=1'\n\n") \
        == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "s=1"}
    with pytest.raises(UserError, match="line 1"):
        _env_lines(b"just a secret\n")


def test_the_scheduler_copies_verifies_nightly_and_checks_weekly():
    cfg = config_mod.Config()
    cfg.backup.verify_hour, cfg.backup.check_weekday, cfg.backup.check_hour = 4, "sat", 7
    svc = SimpleNamespace(config=cfg, extra={})
    scheduler = start_scheduler(svc)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert str(jobs["backup-copies"].trigger) == "interval[0:30:00]"
        verify = {f.name: str(f) for f in jobs["backup-verify"].trigger.fields}
        assert (verify["hour"], verify["minute"]) == ("4", "30")
        check = {f.name: str(f) for f in jobs["repository-check"].trigger.fields}
        assert (check["day_of_week"], check["hour"]) == ("sat", "7")
        before = jobs["backup-copies"].next_run_time
        scheduler.pause()  # the job itself is not run here
        svc.extra["copy_soon"]()  # a backup is done: its copies start now
        assert scheduler.get_job("backup-copies").next_run_time < before
    finally:
        scheduler.shutdown(wait=False)
