"""Where a build's files live on disk, and how a build is addressed from outside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.errors import NotFound
from appliance.store.states import BuildState

LOG_FILES = ("install", "pip", "odoo", "update", "neutralize")
# The one log a container writes itself (its server's); the daemon writes the others from
# the containers' output into a folder no container mounts.
SERVER_LOG = "odoo"


def build_dir(cfg: Config, build_id: int) -> Path:
    return cfg.paths.builds / str(int(build_id))


def server_log_dir(cfg: Config, build_id: int) -> Path:
    """The folder a build's server writes odoo.log into (mounted into its container)."""
    return build_dir(cfg, build_id) / "server-log"


def log_location(cfg: Config, build_id: int, name: str) -> tuple[Path, str]:
    """Where one of a build's logs is: (folder, file name). An unknown name is refused.
    Open it with runtime.buildfs: the server's folder is written by its container."""
    if name not in LOG_FILES:
        raise NotFound(f"no log {name!r} (known: {', '.join(LOG_FILES)})")
    if name == SERVER_LOG:
        return server_log_dir(cfg, build_id), f"{name}.log"
    return build_dir(cfg, build_id) / "logs", f"{name}.log"


def log_path(cfg: Config, build_id: int, name: str) -> Path:
    """The path of one of a build's log files (for tests and tools that trust it)."""
    folder, file_name = log_location(cfg, build_id, name)
    return folder / file_name


def build_url(cfg: Config, build: dict) -> str | None:
    """The address of a running build's Odoo, or None when it has no server."""
    if build.get("state") != BuildState.RUNNING or not build.get("host_port"):
        return None
    return f"http://{cfg.runtime.public_host}:{build['host_port']}/"


def build_page(cfg: Config, build_id: int) -> str:
    return f"{cfg.server.public_url.rstrip('/')}/builds/{int(build_id)}"


def production_data_dir(cfg: Config, project: str) -> Path:
    """Odoo's data dir of a project's production, shared by its successive builds."""
    return cfg.paths.data_dir / "projects" / project / "production"


def database_name(cfg: Config, project: str, suffix: str) -> str:
    return f"{cfg.database.db_prefix}{project.replace('-', '_')}_{suffix}"


def production_database(cfg: Config, project: str) -> str:
    return database_name(cfg, project, "production")


def production_filestore(cfg: Config, project: str) -> Path:
    """Odoo's filestore of the production database (copied for staging, snapshotted)."""
    return production_data_dir(cfg, project) / "filestore" / production_database(cfg, project)


@dataclass(frozen=True)
class ProductionSnapshot:
    """Production as it was before a full deploy: where the copy is kept and what it
    restores if the deploy fails or is cut short."""

    data_dir: Path       # production's Odoo data dir
    live_database: str
    live_files: Path     # the live filestore
    database: str        # the copy of the database
    files: Path          # the copy of the filestore (hard links)


def production_snapshot(cfg: Config, project: str, build_id: int) -> ProductionSnapshot:
    """The snapshot the full deploy of `build_id` takes (one per deploy)."""
    data_dir = production_data_dir(cfg, project)
    return ProductionSnapshot(
        data_dir=data_dir, live_database=production_database(cfg, project),
        live_files=production_filestore(cfg, project),
        database=database_name(cfg, project, f"snap_{int(build_id)}"),
        files=data_dir / "snapshots" / str(int(build_id)))
