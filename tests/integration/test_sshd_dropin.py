"""The sshd drop-in against the host's real sshd: it changes nothing for anyone but the
appliance's SSH user, gives that user only keys the appliance answers and no forwarding,
and `appliance ssh-install` writes it (and its command) safely, refusing what would not
work. The host's /etc/ssh is read, never written: the drop-in goes into a copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.errors import ConfigError, SystemFailure
from appliance.ssh import sshd_config

HOST_CONFIG = Path("/etc/ssh/sshd_config")
INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf"

pytestmark = [
    pytest.mark.skipif(not Path(sshd_config.SSHD).exists(), reason="no openssh-server"),
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T reads host keys as root"),
]


@pytest.fixture
def host_copy(tmp_path) -> Path:
    """The host's sshd_config, its drop-in folder moved into tmp_path, a host key of its own."""
    if not HOST_CONFIG.exists() or INCLUDE not in HOST_CONFIG.read_text():
        pytest.skip("no Debian sshd_config with its drop-in folder on this host")
    (tmp_path / "sshd_config.d").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "host_key")], check=True)
    copy = tmp_path / "sshd_config"
    copy.write_text(HOST_CONFIG.read_text().replace(
        INCLUDE, f"Include {tmp_path / 'sshd_config.d'}/*.conf")
        + f"\nHostKey {tmp_path / 'host_key'}\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return copy


def effective(config: Path, user: str) -> dict[str, str]:
    out = subprocess.run([sshd_config.SSHD, "-T", "-f", str(config), "-C",
                          f"user={user},host=client.example,addr=192.0.2.7"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_the_dropin_changes_nothing_for_the_hosts_other_users(host_copy):
    before = {user: effective(host_copy, user) for user in ("root", "ada", "appliance-x")}
    (host_copy.parent / "sshd_config.d" / "odoo-appliance.conf").write_text(
        sshd_config.dropin("appliance", Path("/usr/libexec/odoo-appliance/ssh-authorized-keys")))
    after = {user: effective(host_copy, user) for user in ("root", "ada", "appliance-x")}
    assert after == before
    assert effective(host_copy, "appliance") != before["ada"]


def test_the_ssh_user_gets_only_the_appliances_keys_and_no_forwarding(host_copy):
    (host_copy.parent / "sshd_config.d" / "odoo-appliance.conf").write_text(
        sshd_config.dropin("appliance", Path("/usr/libexec/odoo-appliance/ssh-authorized-keys")))
    settings = effective(host_copy, "appliance")
    assert settings["authorizedkeysfile"] == "none"
    assert settings["authorizedkeyscommand"] == \
        "/usr/libexec/odoo-appliance/ssh-authorized-keys %u %t %k"
    assert settings["authorizedkeyscommanduser"] == "appliance"
    for key, value in {"authenticationmethods": "publickey", "passwordauthentication": "no",
                       "kbdinteractiveauthentication": "no", "trustedusercakeys": "none",
                       "disableforwarding": "yes", "allowtcpforwarding": "no",
                       "allowagentforwarding": "no", "allowstreamlocalforwarding": "no",
                       "x11forwarding": "no", "permittunnel": "no", "permituserrc": "no",
                       "permitopen": "none", "permitlisten": "none"}.items():
        assert settings[key] == value, key


@pytest.mark.parametrize("name", ["", "two words", "star*", 'quo"te'])
def test_a_user_name_that_is_no_plain_name_is_refused(name):
    with pytest.raises(ConfigError):
        sshd_config.dropin(name, Path("/x"))


@pytest.fixture
def system_user():
    """A system user with a shell, made for the test and removed after it."""
    if shutil.which("useradd") is None:
        pytest.skip("no useradd")
    name = f"applssh{os.getpid()}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
                   check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)


def test_ssh_install_writes_its_files_checks_them_and_is_safe_to_rerun(host_copy,
                                                                       system_user, tmp_path):
    cfg = config_mod.Config(source=tmp_path / "appliance.toml")
    cfg.ssh.user = system_user
    dropin = host_copy.parent / "sshd_config.d" / "odoo-appliance.conf"
    wrapper = tmp_path / "lib" / "ssh-authorized-keys"
    done = sshd_config.install(cfg, dropin, wrapper, host_copy, reload=False)
    assert done == [f"wrote {wrapper}", f"wrote {dropin}"]
    assert wrapper.stat().st_mode & 0o7777 == 0o755 and wrapper.stat().st_uid == 0
    assert dropin.stat().st_mode & 0o7777 == 0o644
    assert f"--config {tmp_path / 'appliance.toml'} ssh-keys" in wrapper.read_text()
    assert effective(host_copy, system_user)["authorizedkeyscommand"].startswith(str(wrapper))
    assert sshd_config.install(cfg, dropin, wrapper, host_copy,
                               reload=False) == ["nothing to change"]


def test_ssh_install_takes_its_dropin_out_again_when_sshd_refuses_the_configuration(
        host_copy, system_user, tmp_path):
    cfg = config_mod.Config(source=tmp_path / "appliance.toml")
    cfg.ssh.user = system_user
    host_copy.write_text(host_copy.read_text() + "\nNoSuchKeyword yes\n")
    dropin = host_copy.parent / "sshd_config.d" / "odoo-appliance.conf"
    with pytest.raises(SystemFailure, match="sshd -t refused"):
        sshd_config.install(cfg, dropin, tmp_path / "wrapper", host_copy, reload=False)
    assert not dropin.exists()


@pytest.mark.parametrize("user, reason", [
    ("root", "not root"),
    ("nobody", "usermod --shell /bin/sh nobody"),
    ("no-such-user-here", "no such system user"),
])
def test_ssh_install_refuses_a_user_it_cannot_serve(tmp_path, user, reason):
    cfg = config_mod.Config()
    cfg.ssh.user = user
    with pytest.raises(ConfigError, match=reason):
        sshd_config.install(cfg, tmp_path / "d.conf", tmp_path / "w", reload=False)
    assert not (tmp_path / "d.conf").exists()
