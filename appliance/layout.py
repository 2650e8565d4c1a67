"""Where a build's files live on disk, and how a build is addressed from outside."""

from __future__ import annotations

from pathlib import Path

from appliance.config import Config
from appliance.errors import NotFound

LOG_FILES = ("install", "pip", "odoo", "update", "neutralize")


def build_dir(cfg: Config, build_id: int) -> Path:
    return cfg.paths.builds / str(int(build_id))


def log_path(cfg: Config, build_id: int, name: str) -> Path:
    """The path of one of a build's log files; an unknown name is refused."""
    if name not in LOG_FILES:
        raise NotFound(f"no log {name!r} (known: {', '.join(LOG_FILES)})")
    return build_dir(cfg, build_id) / "logs" / f"{name}.log"


def build_url(cfg: Config, build: dict) -> str | None:
    """The address of a running build's Odoo, or None when it has no server."""
    if build.get("state") != "running" or not build.get("host_port"):
        return None
    return f"http://{cfg.runtime.public_host}:{build['host_port']}/"


def build_page(cfg: Config, build_id: int) -> str:
    return f"{cfg.server.public_url.rstrip('/')}/builds/{int(build_id)}"


def production_data_dir(cfg: Config, project: str) -> Path:
    """Odoo's data dir of a project's production, shared by its successive builds."""
    return cfg.paths.data_dir / "projects" / project / "production"


def database_name(cfg: Config, project: str, suffix: str) -> str:
    return f"{cfg.database.db_prefix}{project.replace('-', '_')}_{suffix}"
