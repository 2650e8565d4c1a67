"""The host's sshd, told about the appliance's SSH user: a drop-in and a small command.

    /etc/ssh/sshd_config.d/odoo-appliance.conf     a `Match User` block for that user only
    /usr/libexec/odoo-appliance/ssh-authorized-keys    sshd's AuthorizedKeysCommand (root's)

`appliance ssh-install` writes both (setup and the package's postinst run it; safe to
re-run), checks the host's whole configuration with `sshd -t` (a drop-in that breaks it
is taken out again) and has a running sshd reload it. Nothing else of the host's sshd
changes: its other users log in as before.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from appliance.config import DEFAULT_PATH, Config
from appliance.errors import ConfigError, SystemFailure

log = logging.getLogger(__name__)

DROPIN = Path("/etc/ssh/sshd_config.d/odoo-appliance.conf")
WRAPPER = Path("/usr/libexec/odoo-appliance/ssh-authorized-keys")
SSHD = "/usr/sbin/sshd"
HOST_CONFIG = Path("/etc/ssh/sshd_config")
PRIVSEP = Path("/run/sshd")
# Shells that refuse every command: sshd runs the forced command through the user's shell.
NO_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "")


def dropin(user: str, wrapper: Path, command_user: str | None = None) -> str:
    """The Match block for `user`; AuthorizedKeysCommand runs as `command_user` (the same
    user by default: it reads the appliance's configuration and state database)."""
    if not user or any(ch.isspace() or ch in "\"',*?!" for ch in user):
        raise ConfigError(f"[ssh] user = {user!r}: a plain system user name")
    return f"""# The Odoo appliance's SSH entry (git and build shells), written by
# `appliance ssh-install`. It concerns the user {user} only: the keys are those people
# registered in the appliance, each bound to the appliance's own command.
Match User {user}
    AuthorizedKeysFile none
    AuthorizedKeysCommand {wrapper} %u %t %k
    AuthorizedKeysCommandUser {command_user or user}
    AuthorizedPrincipalsFile none
    TrustedUserCAKeys none
    AuthenticationMethods publickey
    PubkeyAuthentication yes
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    HostbasedAuthentication no
    PermitEmptyPasswords no
    DisableForwarding yes
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    AllowAgentForwarding no
    X11Forwarding no
    PermitTunnel no
    PermitListen none
    PermitOpen none
    PermitUserRC no
    PermitTTY yes
    AcceptEnv GIT_PROTOCOL
"""


def wrapper_script(cfg: Config) -> str:
    """sshd's AuthorizedKeysCommand: this appliance's `ssh-keys`, with its configuration."""
    config = Path(cfg.source or DEFAULT_PATH).absolute()
    command = shlex.join([sys.executable, "-I", "-m", "appliance.cli", "--config",
                          str(config), "ssh-keys"])
    return f"""#!/bin/sh
# sshd's AuthorizedKeysCommand for the Odoo appliance's SSH user (see
# /etc/ssh/sshd_config.d/odoo-appliance.conf): prints the registered key sshd was offered,
# bound to the appliance's forced command, or nothing. See `appliance ssh-install`.
exec {command} "$@"
"""


def install(cfg: Config, dropin_path: Path = DROPIN, wrapper_path: Path = WRAPPER,
            host_config: Path = HOST_CONFIG, reload: bool = True) -> list[str]:
    """Write the command and the drop-in, check sshd's configuration, reload a running
    sshd. Safe to re-run. Returns what was done, in words."""
    _check_user(cfg.ssh.user)
    done = []
    if _write(wrapper_path, wrapper_script(cfg), 0o755):
        done.append(f"wrote {wrapper_path}")
    text = dropin(cfg.ssh.user, wrapper_path)
    previous = dropin_path.read_text() if dropin_path.exists() else None
    if _write(dropin_path, text, 0o644):
        done.append(f"wrote {dropin_path}")
    # sshd -t needs its privilege separation folder, which only a running sshd's unit makes
    PRIVSEP.mkdir(mode=0o755, exist_ok=True)
    check = subprocess.run([SSHD, "-t", "-f", str(host_config)], capture_output=True,
                           text=True)
    if check.returncode != 0:
        if previous is None:
            dropin_path.unlink()
        else:
            _write(dropin_path, previous, 0o644)
        raise SystemFailure(f"sshd -t refused the configuration with the drop-in, which "
                            f"was taken out again: {check.stderr.strip()[-500:]}")
    if done and reload:
        done += _reload()
    return done or ["nothing to change"]


def _check_user(user: str) -> None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"[ssh] user = {user!r}: no such system user") from None
    if entry.pw_uid == 0:
        raise ConfigError("[ssh] user: not root (the drop-in would take root's own keys "
                          "away); the appliance's system user")
    if entry.pw_shell in NO_SHELLS:
        raise ConfigError(f"the user {user} has the shell {entry.pw_shell or '(none)'!r}, "
                          f"which refuses the forced command sshd runs through it: "
                          f"`usermod --shell /bin/sh {user}`")


def _write(path: Path, text: str, mode: int) -> bool:
    """Write root's file at once (never seen half-written); False when it already is."""
    if path.exists() and path.read_text() == text and path.stat().st_mode & 0o7777 == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


def _reload() -> list[str]:
    """Have sshd read its configuration again, if systemd runs it."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return ["sshd not reloaded (no systemd): it reads the drop-in when it next starts"]
    for unit in ("ssh.service", "sshd.service"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit])
        if active.returncode == 0:
            subprocess.run(["systemctl", "reload", unit], check=True)
            return [f"reloaded {unit}"]
    return ["sshd is not running: it reads the drop-in when it starts"]
