"""How a build's Odoo runs in Docker: its folders, mounts, command lines and server.

Inside every container the layout is the same, real Odoo or the stand-in:
/opt/odoo (the Odoo source, read-only), /mnt/src/user (the branch, read-only), Odoo's
bytecode compiled once per version (read-only), the PostgreSQL socket directory, the
build's /etc/odoo/odoo.conf (ODOO_RC: database, password, folders, outgoing mail;
read-only), and the only folders the container may write: /var/lib/odoo/data (Odoo's
data dir: filestore, sessions) and, for its server, /var/log/odoo (odoo.log). The root
filesystem is read-only; /tmp and the home folder are in memory.

The container is hostile (it runs the branch's code), so the daemon keeps the logs of
one-off runs (install, update, neutralize) and of image builds (pip) in the build's
`logs/` folder, which no container mounts, from the containers' output as Docker hands
it over; what it must read from a folder a container can write goes through
runtime.buildfs.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from appliance import layout
from appliance.errors import ConfigError, DockerError
from appliance.jobs import bytecode, proxy
from appliance.jobs import mail as mail_jobs
from appliance.jobs.steps import NO_STEPS, BuildFailed
from appliance.runtime import buildfs, git, images, odoo
from appliance.runtime.docker import LABEL_BUILD, LABEL_PROJECT, LABEL_ROLE, ContainerInfo, Mount
from appliance.shell import control as shell_control
from appliance.store import builds as builds_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

ODOO_DIR = "/opt/odoo"
USER_DIR = "/mnt/src/user"
DATA_DIR = "/var/lib/odoo/data"
LOG_DIR = "/var/log/odoo"
PYCACHE_DIR = images.PYCACHE_DIR
CONF_PATH = "/etc/odoo/odoo.conf"
# The server's control socket folder (shell.control), read-only.
CONTROL_DIR = "/run/appliance"
# In memory, so a read-only root filesystem still leaves Odoo and Python the scratch
# space they expect; sizes count against the container's memory limit.
TMPFS = {"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"}
# Build folders: the daemon's own (0700) and those the container's user writes (0700).
FOLDER_MODE = 0o700
HTTP_PORT = 8069
# Odoo answers /web/health about 0.9 s after start; ask often, as a visitor may be
# waiting for a woken build (a refused connection costs next to nothing).
HEALTH_POLL_SECONDS = 0.02
# Whether the server container still runs is asked of Docker this often while waiting.
CONTAINER_CHECK_SECONDS = 0.5
# A server being stopped gets this long to finish its requests before it is killed.
STOP_GRACE_SECONDS = 10


@dataclass
class BuildPaths:
    root: Path          # the daemon's: odoo.conf, src/, logs/ (no container writes here)
    src: Path           # the branch's files, mounted read-only
    data: Path          # Odoo's data dir: the container writes it
    logs: Path          # the daemon's logs of the build (install, pip, update, neutralize)
    server_logs: Path   # the server's own log folder (odoo.log): the container writes it


@dataclass(frozen=True)
class OdooSetup:
    """What every container of a build runs with. A pipeline makes it from what its
    steps returned (the image, the database, the branch's addons folders); a kept
    build's is read back from its row in the store (`stored_setup`)."""

    project: dict
    build_id: int
    stage: str
    image: str
    database: str | None
    addons_dirs: tuple[str, ...]  # the branch's folders holding its modules
    paths: BuildPaths


def stored_setup(svc, project: dict, build: dict) -> OdooSetup:
    """The setup a build's row records (to start a kept build's server again)."""
    return OdooSetup(project=project, build_id=build["id"], stage=build["stage"],
                     image=build["image"], database=build["database"],
                     addons_dirs=tuple(d for d in build["addons_dirs"].split(",") if d),
                     paths=build_paths(svc.config, build["id"], build["data_dir"]))


def build_paths(cfg, build_id: int, data_dir: str | None = None) -> BuildPaths:
    """A build's folders; Odoo's data dir is its own unless it shares one (production)."""
    root = layout.build_dir(cfg, build_id)
    data = Path(data_dir) if data_dir else root / "data"
    return BuildPaths(root=root, src=root / "src", data=data, logs=root / "logs",
                      server_logs=layout.server_log_dir(cfg, build_id))


def make_writable(path: Path, uid: int) -> None:
    """A folder only the container's user can use: chowned when we are root, else ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() not in (0, uid):
        raise ConfigError(f"[runtime] uid is {uid} but the appliance runs as uid "
                          f"{os.geteuid()}: they must match when it does not run as root")
    buildfs.make_folder(path, uid, FOLDER_MODE)


def prepare_folders(svc, build_id: int, data_dir: str | None = None) -> BuildPaths:
    paths = build_paths(svc.config, build_id, data_dir)
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    for folder in (paths.root, paths.logs):
        buildfs.make_folder(folder, None, FOLDER_MODE)
    for folder in (paths.data, paths.server_logs):
        make_writable(folder, svc.config.runtime.uid)
    return paths


def odoo_source(svc, version: str) -> Path:
    spec = svc.config.odoo_version(version)
    return git.ensure_odoo_source(spec.source, spec.ref, svc.config.paths.odoo / "src" / version)


def addons_path(source: Path, user_dirs: list[str]) -> list[str]:
    """The branch's folders first, then Odoo's own (as Odoo.sh orders them)."""
    inside = [f"{USER_DIR}/{d}".rstrip("/.") if d not in ("", ".") else USER_DIR
              for d in user_dirs]
    for folder in ("addons", "odoo/addons"):
        if (source / folder).is_dir():
            inside.append(f"{ODOO_DIR}/{folder}")
    return inside


def write_odoo_conf(svc, setup: OdooSetup) -> Path:
    """The build's odoo.conf (ODOO_RC in its containers): the database, folders and
    outgoing mail, so that `odoo-bin shell` in a container needs no options. It holds an
    SMTP password, so only the container's user may read it."""
    args = common_args(svc, setup)
    # The password lives here and nowhere else the container sees: not in its
    # environment (`docker inspect` shows that), not on its command line (`ps`).
    options = {"db_host": args["db_host"], "db_user": args["db_user"],
               "db_password": setup.project["db_password"],
               "data_dir": args["data_dir"], "addons_path": ",".join(args["addons_path"]),
               # No database manager: listing databases needs `postgres`, closed to
               # project roles, and a build serves its own database only.
               "list_db": "False"}
    if args["database"]:
        options["db_name"] = args["database"]
    if svc.config.proxy.base_domain:
        # Behind Caddy: Odoo takes the client's address, scheme and host from the
        # X-Forwarded-* headers Caddy sets (links and redirects say https://<name>).
        options["proxy_mode"] = "True"
    options.update(mail_jobs.odoo_options(svc, setup.project, setup.build_id, setup.stage))
    lines = ["[options]"]
    for key, value in options.items():
        if any(c in str(value) for c in "\r\n\0"):
            raise ConfigError(f"odoo.conf option {key} may not hold a line break")
        lines.append(f"{key} = {value}")
    path = setup.paths.root / "odoo.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".conf.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.fchown(handle.fileno(), svc.config.runtime.uid, svc.config.runtime.uid)
    os.replace(temporary, path)
    return path


def mounts(svc, setup: OdooSetup, server: bool = False) -> list[Mount]:
    """What a build's container sees: read-only but for Odoo's data dir and, for the
    server, its log folder. Nothing writable is shared with another project."""
    source = odoo_source(svc, setup.project["odoo_version"])
    conf = write_odoo_conf(svc, setup)
    paths = setup.paths
    found = [
        Mount(str(conf), CONF_PATH),
        Mount(str(source), ODOO_DIR),
        Mount(str(paths.src), USER_DIR),
        Mount(str(paths.data), DATA_DIR, read_only=False),
        Mount(svc.config.database.socket_dir, svc.config.database.socket_dir),
    ]
    cache = bytecode.cache_dir(svc, setup.project["odoo_version"])
    if cache.is_dir():
        found.append(Mount(str(cache), PYCACHE_DIR))
    if server:
        found.append(Mount(str(paths.server_logs), LOG_DIR, read_only=False))
        # odoo-update and odoo-restart in its terminals ask the daemon here (shell.control)
        found.append(Mount(str(shell_control.folder(svc.config, setup.build_id)),
                           CONTROL_DIR))
    return found


def environment() -> dict[str, str]:
    # No secret here: the database password is in odoo.conf, readable by the user alone.
    return {"ODOO_RC": CONF_PATH}


def labels(setup: OdooSetup, role: str) -> dict[str, str]:
    return {LABEL_PROJECT: setup.project["name"], LABEL_BUILD: str(setup.build_id),
            LABEL_ROLE: role}


def container_name(svc, build_id: int, role: str) -> str:
    return f"appl-{svc.instance}-{build_id}-{role}"


def common_args(svc, setup: OdooSetup) -> dict:
    """The server options every command line of the build starts with."""
    source = odoo_source(svc, setup.project["odoo_version"])
    user_dirs = list(setup.addons_dirs) or ["."]
    return dict(odoo_bin=f"{ODOO_DIR}/odoo-bin", database=setup.database,
                db_host=svc.config.database.socket_dir, db_user=setup.project["db_role"],
                db_password=None, addons_path=addons_path(source, user_dirs),
                data_dir=DATA_DIR, http_port=HTTP_PORT)


def start_server(svc, setup: OdooSetup) -> ContainerInfo:
    """Start the build's long-running Odoo server, its port published: the server
    container a sleeping build kept, started again, or else a new one."""
    make_writable(setup.paths.server_logs, svc.config.runtime.uid)
    shell_control.prepare(svc, setup.build_id)
    svc.extra.get("shell_nudge", lambda: None)()  # its control socket, now
    info = _start_kept(svc, setup)
    if info is None:
        command = odoo.server_command(**common_args(svc, setup), logfile=f"{LOG_DIR}/odoo.log")
        info = svc.docker.start(
            name=container_name(svc, setup.build_id, "server"), image=setup.image,
            command=command, labels=labels(setup, "server"),
            mounts=mounts(svc, setup, server=True), env=environment(),
            network=svc.docker.ensure_network(setup.project["name"]),
            publish=HTTP_PORT, restart=True, tmpfs=TMPFS)
    if not info.host_port:
        raise BuildFailed("the server started but Docker published no port")
    return info


def serve(svc, setup: OdooSetup, steps=NO_STEPS, result: str | None = None) -> int:
    """Start the build's server, wait until it answers, mark the build running (with its
    result, when given); returns the port. A pipeline passes its steps ("start" and
    "health" are recorded). A server that does not come up is removed and the error
    raised: a pipeline's build then fails, a stopped build started again is stopped."""
    with svc.db.transaction() as conn:
        before = builds_store.set_state(conn, setup.build_id, BuildState.STARTING)
    try:
        with steps.step("start") as out:
            server = start_server(svc, setup)
            out["detail"] = f"port {server.host_port}"
        with steps.step("health") as out:
            seconds = wait_ready(health_host(svc), server.host_port,
                                 svc.config.builds.health_timeout, server.id, svc.docker)
            out["detail"] = f"ready after {seconds:.1f} s"
    except BaseException:
        svc.docker.remove_all(setup.build_id, "server")
        if before is BuildState.STOPPED:
            with svc.db.transaction() as conn:
                builds_store.set_state(conn, setup.build_id, BuildState.STOPPED,
                                       host_port=None)
        raise
    with svc.db.transaction() as conn:
        builds_store.set_state(conn, setup.build_id, BuildState.RUNNING,
                               host_port=server.host_port, asleep=False,
                               **({"result": result} if result else {}))
    proxy.refresh(svc)  # its names now reach it
    return server.host_port


def _start_kept(svc, setup: OdooSetup) -> ContainerInfo | None:
    """The build's stopped server container (kept by `stop_server(keep=True)` when the
    build fell asleep) started again, as a plain `docker start` would; its odoo.conf is
    written anew first (a bind mount is read at each start). None when there is none;
    one that will not start is removed, and a new one is made instead."""
    kept = svc.docker.get(container_name(svc, setup.build_id, "server"))
    if kept is None or kept.running or kept.build_id != setup.build_id \
            or kept.role != "server":
        return None
    write_odoo_conf(svc, setup)
    try:
        return svc.docker.start_again(kept.id)
    except DockerError as exc:
        log.warning("build %s: its kept server did not start again (%s); making a new one",
                    setup.build_id, exc)
        svc.docker.remove(kept.id)
        return None


def wait_ready(host: str, port: int, timeout: float, container_id: str | None = None,
               docker=None) -> float:
    """Wait for /web/health, then /web/login (health passes even without a database).
    Returns the seconds it took; raises BuildFailed on timeout or if the server exits."""
    started = checked = time.monotonic()
    for path in ("/web/health", "/web/login"):
        url = f"http://{host}:{port}{path}"
        while not _answers(url):
            now = time.monotonic()
            if now - started > timeout:
                raise BuildFailed(f"{path} did not answer within {timeout:.0f} s")
            if docker is not None and container_id and now - checked >= CONTAINER_CHECK_SECONDS:
                checked = now
                info = docker.get(container_id)
                if info is None or info.status in ("exited", "dead", "restarting"):
                    raise BuildFailed(f"the server stopped before answering {path}: see odoo.log")
            time.sleep(HEALTH_POLL_SECONDS)
    return time.monotonic() - started


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def health_host(svc) -> str:
    host = svc.config.runtime.publish_interface
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def stop_server(svc, build: dict, reason: str, keep: bool = False) -> None:
    """Stop and remove the build's server container; its database is kept. With `keep`
    (a build falling asleep) the container is only stopped, so that waking it is a
    `docker start` (`start_server`). Safe to run twice: a build already stopped keeps
    its state and gets no second event. Its names answer the maintenance or stopped
    page before the server goes, never an error."""
    with proxy.leaving(svc, build["id"]):
        if keep:
            svc.docker.stop_all(build["id"], "server", grace=STOP_GRACE_SECONDS)
        else:
            svc.docker.remove_all(build["id"], "server", grace=STOP_GRACE_SECONDS)
        with svc.db.transaction() as conn:
            if builds_store.get_build(conn, build["id"])["state"] == BuildState.STOPPED:
                return
            builds_store.set_state(conn, build["id"], BuildState.STOPPED, host_port=None)
            builds_store.add_event(conn, project_id=build["project_id"],
                                   branch_id=build["branch_id"], build_id=build["id"],
                                   kind="server_stopped", message=reason)


def enforce_server_cap(svc, keep: int | None = None) -> list[int]:
    """Stop the least recently used development servers beyond the configured cap."""
    cap = svc.config.workers.max_running_servers
    with svc.db.transaction() as conn:
        running = builds_store.running_servers(conn)
    stoppable = [b for b in running if b["stage"] == "development" and b["id"] != keep]
    stopped = []
    while len(running) - len(stopped) > cap and stoppable:
        build = stoppable.pop(0)
        stop_server(svc, build, f"server stopped: more than {cap} running (least recently used)")
        stopped.append(build["id"])
    return stopped
