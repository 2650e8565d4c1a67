"""Where a build's files live on disk, and how a build is addressed from outside."""

from __future__ import annotations

import hashlib
import re
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


# A DNS label is at most 63 characters: a branch's part leaves room for "-<build id>".
SLUG_MAX = 50
_NOT_IN_LABEL = re.compile(r"[^a-z0-9]+")


def branch_slug(name: str) -> str:
    """A branch name as a DNS label: lowercase letters, digits and hyphens. A name that
    does not survive that unchanged ("feature/x", "Main") gets a short hash of itself, so
    two branches never share a name ("feature-x" and "feature/x" stay apart)."""
    slug = _NOT_IN_LABEL.sub("-", name.lower()).strip("-")[:SLUG_MAX].strip("-") or "branch"
    if slug != name:
        slug = f"{slug[:SLUG_MAX - 7].rstrip('-')}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return slug


def build_host(cfg: Config, project: str, branch: str, build_id: int) -> str:
    """The proxy's name of one build: <branch>-<id>.<project>.<base domain>."""
    return f"{branch_slug(branch)}-{int(build_id)}.{project}.{cfg.proxy.base_domain}"


def branch_host(cfg: Config, project: str, branch: str) -> str:
    """The proxy's name of a branch's latest build: <branch>.<project>.<base domain>."""
    return f"{branch_slug(branch)}.{project}.{cfg.proxy.base_domain}"


def https_url(cfg: Config, host: str) -> str:
    port = cfg.proxy.https_port
    return f"https://{host}{'' if port == 443 else f':{port}'}/"


def build_url(cfg: Config, build: dict) -> str | None:
    """The address of a running build's Odoo, or None when it has no server: its name
    behind the proxy, or its loopback port when there is no proxy."""
    if build.get("state") != BuildState.RUNNING or not build.get("host_port"):
        return None
    if cfg.proxy.base_domain and build.get("project") and build.get("branch"):
        return https_url(cfg, build_host(cfg, build["project"], build["branch"], build["id"]))
    return f"http://{cfg.runtime.public_host}:{build['host_port']}/"


def proxy_urls(cfg: Config, project: str, branch: str, build_id: int) -> tuple[str, str] | None:
    """The build's own address and its branch's, behind the proxy (None without one)."""
    if not cfg.proxy.base_domain:
        return None
    return (https_url(cfg, build_host(cfg, project, branch, build_id)),
            https_url(cfg, branch_host(cfg, project, branch)))


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
        # Beside the data dir, never in it: its containers write there, and a link put
        # where the snapshot is would be followed when it is put back.
        files=data_dir.parent / "snapshots" / str(int(build_id)))
