"""Where people reach the appliance over SSH, as the UI and the messages show it."""

from __future__ import annotations

from urllib.parse import urlsplit

from appliance.config import Config


def host(cfg: Config) -> str:
    """[ssh] host, else the host of the public address."""
    return cfg.ssh.host or urlsplit(cfg.server.public_url).hostname or "localhost"


def destination(cfg: Config) -> str:
    """user@host, with -p when sshd is not on port 22: what goes after `ssh`."""
    port = "" if cfg.ssh.port == 22 else f"-p {cfg.ssh.port} "
    return f"{port}{cfg.ssh.user}@{host(cfg)}"


def remote(cfg: Config, project: str) -> str:
    """The git remote of a project over SSH."""
    port = "" if cfg.ssh.port == 22 else f":{cfg.ssh.port}"
    return f"ssh://{cfg.ssh.user}@{host(cfg)}{port}/{project}.git"
