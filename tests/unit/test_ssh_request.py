"""What an SSH client's command line is read as (git's programs on a repository, a build's
shell, or a refusal), and the SSH addresses shown to people from [ssh]."""

from __future__ import annotations

import pytest

from appliance import config as config_mod
from appliance.errors import UserError
from appliance.ssh import address
from appliance.ssh.request import GitRequest, ShellRequest, parse


@pytest.mark.parametrize("original, service, project", [
    ("git-receive-pack '/acme.git'", "git-receive-pack", "acme"),   # ssh://host/acme.git
    ("git-upload-pack 'acme.git'", "git-upload-pack", "acme"),      # host:acme.git
    ("git-upload-pack '/shop-2'", "git-upload-pack", "shop-2"),
    ("git-upload-pack 'acme.git/'", "git-upload-pack", "acme"),
    ("git upload-pack '/acme.git'", "git-upload-pack", "acme"),
])
def test_git_clients_command_lines_name_a_service_and_a_project(original, service, project):
    assert parse(original) == GitRequest(service, project)


@pytest.mark.parametrize("original, expected", [
    ("build-42", ShellRequest(build_id=42)),
    ("acme/main", ShellRequest(project="acme", branch="main")),
    ("acme/feature/cart-2", ShellRequest(project="acme", branch="feature/cart-2")),
    ("build-7 ls -la", ShellRequest(build_id=7, command="ls -la")),
])
def test_a_build_or_a_branch_asks_for_its_shell(original, expected):
    assert parse(original) == expected


@pytest.mark.parametrize("original, reason", [
    (None, "no command given"),
    ("   ", "no command given"),
    ("ls -la", "unknown command"),
    ("scp -t /tmp", "unknown command"),
    ("internal-sftp", "unknown command"),
    ("/usr/lib/openssh/sftp-server", "unknown command"),
    ("git-upload-archive '/acme.git'", "is not served: only fetch and push"),
    ("git-receive-pack '/../etc.git'", "no repository"),
    ("git-receive-pack '/a/b.git'", "no repository"),
    ("git-receive-pack '/Acme.git'", "no repository"),
    ("git-receive-pack '/acme.git' extra", "takes one repository"),
    ("git-receive-pack", "takes one repository"),
    ("build-0", "unknown command"),
    ("build-x", "unknown command"),
    ("acme/..", "unknown command"),
    ("acme/$(id)", "unknown command"),
    ("acme/main;id", "unknown command"),
    ("echo 'unclosed", "unreadable command"),
])
def test_anything_else_is_refused_with_its_reason(original, reason):
    with pytest.raises(UserError) as caught:
        parse(original)
    assert reason in str(caught.value)


def test_a_refusal_shows_the_command_short_and_without_control_characters():
    with pytest.raises(UserError) as caught:
        parse("evil\x1b]0;title\x07" + "x" * 200)
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message and len(message) < 120


def test_ssh_settings_are_read_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[ssh]\nuser = "git"\nhost = "git.example.com"\nport = 2222\n')
    cfg = config_mod.load(path, env={})
    assert (cfg.ssh.user, cfg.ssh.host, cfg.ssh.port) == ("git", "git.example.com", 2222)
    assert config_mod.load(path, env={"APPLIANCE_SSH_PORT": "22"}).ssh.port == 22


def test_addresses_leave_port_22_out_and_default_to_the_public_host():
    cfg = config_mod.Config()
    cfg.server.public_url = "https://apps.example.com"
    assert address.remote(cfg, "acme") == "ssh://appliance@apps.example.com/acme.git"
    assert address.destination(cfg) == "appliance@apps.example.com"
    cfg.ssh.host, cfg.ssh.port = "ssh.example.com", 2222
    assert address.remote(cfg, "acme") == "ssh://appliance@ssh.example.com:2222/acme.git"
    assert address.destination(cfg) == "-p 2222 appliance@ssh.example.com"


def test_the_package_ships_the_authorized_keys_command_as_ssh_install_writes_it(monkeypatch):
    """The .deb's copy in /usr/libexec/odoo-appliance is what `appliance ssh-install` would
    write for the package's python and configuration: the postinst finds nothing to
    change there, and dpkg owns the file."""
    from pathlib import Path

    from appliance.ssh import sshd_config
    from tests.host import ROOT
    monkeypatch.setattr("sys.executable", "/usr/bin/python3")
    cfg = config_mod.Config(source=Path("/etc/appliance/appliance.toml"))
    shipped = ROOT / "packaging" / "deb" / "ssh-authorized-keys"
    assert shipped.read_text() == sshd_config.wrapper_script(cfg)
    assert shipped.stat().st_mode & 0o111 == 0o111  # dh_fixperms makes it 0755
    install = (ROOT / "packaging" / "deb" / "debian" / "odoo-appliance.install").read_text()
    assert f"packaging/deb/ssh-authorized-keys {str(sshd_config.WRAPPER.parent)[1:]}/" in install
