"""The Docker engine: build containers and their labels (networks: docker_networks).

Every container the appliance starts goes through `DockerRuntime.start`, which applies the
safety defaults (non-root, no capabilities, no new privileges, pids/memory/CPU limits,
ports on one interface only) so no caller can forget one. Containers carry labels, so
the appliance finds them again after a restart; the instance label keeps two appliances
(or two test runs) on one engine from ever touching each other's containers.
"""

from __future__ import annotations

import codecs
import logging
import os
import threading
from dataclasses import dataclass

import docker
import docker.errors
import docker.types

from appliance.config import RuntimeConfig
from appliance.errors import DockerError
# The labels are named here too: callers know one module for containers.
from appliance.runtime.docker_engine import (LABEL_APPLIANCE, LABEL_BUILD,  # noqa: F401
                                             LABEL_PROJECT, LABEL_ROLE, _timed_out, connect,
                                             engine_errors)
from appliance.runtime.docker_networks import NetworksMixin

log = logging.getLogger(__name__)

# Where the configured CA bundle appears inside every container (and runtime image).
CA_BUNDLE_PATH = "/etc/appliance/ca-bundle.crt"
CA_ENV_NAMES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE")

# A container must never be handed the engine itself: that is root on the host.
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")

# A followed container's output may pause this long past its own timeout before the
# engine is thought to be gone (the kill at the timeout ends the stream first).
FOLLOW_MARGIN_SECONDS = 60



@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass
class ContainerInfo:
    id: str
    name: str
    labels: dict
    status: str  # Docker's status: created, running, restarting, exited, dead...
    build_id: int | None
    role: str | None
    host_port: int | None
    exit_code: int | None

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _host_port(attrs: dict) -> int | None:
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for bindings in ports.values():
        for binding in bindings or []:
            port = _int_or_none(binding.get("HostPort"))
            if port:
                return port
    return None


def _info(container) -> ContainerInfo:
    attrs = container.attrs
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    state = attrs.get("State") or {}
    status = state.get("Status") or container.status
    exited = status in ("exited", "dead")
    return ContainerInfo(
        id=container.id, name=container.name, labels=labels, status=status,
        build_id=_int_or_none(labels.get(LABEL_BUILD)), role=labels.get(LABEL_ROLE),
        host_port=_host_port(attrs),
        exit_code=_int_or_none(state.get("ExitCode")) if exited else None)


def _check_mount(mount: Mount) -> None:
    real = os.path.realpath(mount.source)
    if real in DOCKER_SOCKETS or os.path.basename(real) == "docker.sock":
        raise DockerError(f"refusing to mount the Docker socket ({mount.source}) "
                          "into a container")


class DockerRuntime(NetworksMixin):
    """One Docker engine, seen through one appliance instance's labels."""

    def __init__(self, cfg: RuntimeConfig, instance: str, client=None):
        if not instance:
            raise ValueError("an instance id is required")
        self.cfg = cfg
        self.instance = instance
        self._shared = client
        self._local = threading.local()
        if client is None:
            self._local.client = connect()  # fails here, early, if the engine is away

    @property
    def client(self):
        """A client per thread: the SDK's HTTP connection is not safe to share between
        threads (concurrent builds saw requests garbled into 404 "page not found")."""
        if self._shared is not None:
            return self._shared
        if getattr(self._local, "client", None) is None:
            self._local.client = connect()
        return self._local.client

    def version(self) -> str:
        with engine_errors("reading the engine's version"):
            return self.client.version()["Version"]

    def start(self, *, name: str, image: str, command: list[str], labels: dict[str, str],
              mounts: list[Mount], env: dict[str, str], network: str,
              publish: int | None = None, restart: bool = False,
              tmpfs: dict[str, str] | None = None) -> ContainerInfo:
        """Run a detached container with the safety defaults; return it started. Its
        root filesystem is read-only: it writes only to its writable mounts and to the
        `tmpfs` folders (path -> mount options), which live in its memory."""
        mounts, env = self._with_ca_bundle(list(mounts), dict(env))
        for mount in mounts:
            _check_mount(mount)
        self._free_name(name)
        options = self._options(labels, mounts, env, publish, restart)
        options["tmpfs"] = dict(tmpfs or {})
        # create + start, never `run`: a missing image must not be pulled from a
        # registry under a name someone else may own.
        with engine_errors(f"creating container {name} from {image}"):
            container = self.client.containers.create(
                image, command, name=name, network=network, **options)
        try:
            with engine_errors(f"starting container {name}"):
                container.start()
                container.reload()
        except DockerError:
            self.remove(container.id)
            raise
        log.info("started container %s (%s) from %s", name, container.short_id, image)
        return _info(container)

    def _with_ca_bundle(self, mounts: list[Mount], env: dict[str, str]):
        if self.cfg.ca_bundle:
            mounts.append(Mount(self.cfg.ca_bundle, CA_BUNDLE_PATH, read_only=True))
            for key in CA_ENV_NAMES:
                env.setdefault(key, CA_BUNDLE_PATH)
        return mounts, env

    def _options(self, labels, mounts, env, publish, restart) -> dict:
        cfg = self.cfg
        options = dict(
            user=f"{cfg.uid}:{cfg.uid}",
            labels={**labels, LABEL_APPLIANCE: self.instance},
            environment=env,
            mounts=[docker.types.Mount(m.target, m.source, type="bind",
                                       read_only=m.read_only) for m in mounts],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=cfg.pids_limit,
            mem_limit=cfg.memory,
            memswap_limit=cfg.memory,
            nano_cpus=int(cfg.cpus * 1_000_000_000),
            privileged=False,
            # An init as PID 1 reaps orphans: without it, exited children of a process
            # that did not wait for them stay as zombies against pids_limit.
            init=True,
            read_only=True,
            tty=False,
            stdin_open=False,
        )
        if publish is not None:
            options["ports"] = {f"{publish}/tcp": (cfg.publish_interface, None)}
        if restart:
            options["restart_policy"] = {"Name": "unless-stopped"}
        return options

    def _free_name(self, name: str) -> None:
        """Remove a stopped container of ours holding `name`; refuse anything else."""
        container = self._container(name)
        if container is None:
            return
        labels = container.labels or {}
        if labels.get(LABEL_APPLIANCE) != self.instance:
            raise DockerError(f"the container name {name} is taken by a container "
                              "this appliance does not own")
        if container.status in ("running", "restarting", "paused"):
            raise DockerError(f"a container named {name} is already running")
        self.remove(container.id)

    def _container(self, id_or_name: str):
        try:
            with engine_errors(f"inspecting container {id_or_name}"):
                return self.client.containers.get(id_or_name)
        except DockerError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise

    def wait(self, container_id: str, timeout: float) -> int:
        """The container's exit code; past `timeout` seconds it is killed."""
        container = self._require(container_id)
        try:
            with engine_errors(f"waiting for container {container_id}"):
                result = container.wait(timeout=timeout)
        except DockerError as exc:
            if not _timed_out(exc.__cause__):
                raise
            self._kill(container)
            raise DockerError(f"container {container.name} timed out after "
                              f"{timeout:g} s and was killed") from None
        return int(result.get("StatusCode", -1))

    def _kill(self, container) -> None:
        try:
            with engine_errors(f"killing container {container.name}"):
                container.kill()
        except DockerError as exc:
            # Already gone or already stopped: nothing left to kill.
            log.info("killing %s: %s", container.name, exc)

    def _require(self, container_id: str):
        container = self._container(container_id)
        if container is None:
            raise DockerError(f"no container {container_id}")
        return container

    def follow_to_end(self, container_id: str, timeout: float, write) -> int:
        """Hand the container's output (stdout and stderr, as text) to write() as it
        comes, until it exits; returns its exit code. Past `timeout` seconds it is
        killed and DockerError says so. The output goes through Docker, never through a
        file the container could have swapped for a link."""
        client = docker.from_env(timeout=int(timeout) + FOLLOW_MARGIN_SECONDS)
        killed = threading.Event()

        def kill():
            killed.set()
            self._kill(container)

        try:
            with engine_errors(f"following container {container_id}"):
                container = client.containers.get(container_id)
                timer = threading.Timer(timeout, kill)
                timer.daemon = True
                timer.start()
                try:
                    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                    for chunk in container.logs(stdout=True, stderr=True, stream=True,
                                                follow=True):
                        write(decoder.decode(chunk))
                    write(decoder.decode(b"", final=True))
                    code = int(container.wait(timeout=FOLLOW_MARGIN_SECONDS)
                               .get("StatusCode", -1))
                finally:
                    timer.cancel()
        finally:
            client.close()
        if killed.is_set():
            raise DockerError(f"container {container.name} timed out after {timeout:g} s "
                              "and was killed")
        return code

    def logs(self, container_id: str) -> str:
        container = self._require(container_id)
        with engine_errors(f"reading the logs of container {container_id}"):
            data = container.logs(stdout=True, stderr=True)
        return data.decode("utf-8", errors="replace")

    def stop(self, container_id: str, timeout: int = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; a missing container is fine."""
        container = self._container(container_id)
        if container is None:
            return
        try:
            with engine_errors(f"stopping container {container_id}"):
                container.stop(timeout=timeout)
        except DockerError as exc:
            if not isinstance(exc.__cause__, docker.errors.NotFound):
                raise

    def remove(self, container_id: str) -> None:
        """Remove the container, running or not; a missing container is fine."""
        try:
            with engine_errors(f"removing container {container_id}"):
                self.client.api.remove_container(container_id, force=True)
        except DockerError as exc:
            if not isinstance(exc.__cause__, docker.errors.NotFound):
                raise

    def start_again(self, container_id: str) -> ContainerInfo:
        """Start a stopped container of this instance again, as it was made (its mounts,
        limits, labels, command). Docker may publish its port on another host port than
        last time: the returned info has the new one."""
        container = self._container(container_id)
        if container is None or (container.labels or {}).get(LABEL_APPLIANCE) != self.instance:
            raise DockerError(f"no container {container_id} of this appliance")
        with engine_errors(f"starting container {container.name} again"):
            container.start()
            container.reload()
        log.info("started container %s (%s) again", container.name, container.short_id)
        return _info(container)

    def stop_all(self, build_id: int, role: str | None = None, *,
                 grace: int = 10) -> list[ContainerInfo]:
        """Stop the build's running containers (those of one role, if given) and keep
        them: SIGTERM, then SIGKILL after `grace` seconds. Returns those it found."""
        found = self.find(build_id=build_id, role=role)
        for info in found:
            if info.running:
                self.stop(info.id, timeout=grace)
        return found

    def remove_all(self, build_id: int, role: str | None = None, *,
                   grace: int = 0) -> list[ContainerInfo]:
        """Remove the build's containers (those of one role, if given), running or not,
        and return them. With `grace`, a running one first gets SIGTERM and that many
        seconds to end on its own (a server finishing its requests)."""
        found = self.find(build_id=build_id, role=role)
        for info in found:
            if grace and info.running:
                self.stop(info.id, timeout=grace)
            self.remove(info.id)
        return found

    def get(self, container_id_or_name: str) -> ContainerInfo | None:
        container = self._container(container_id_or_name)
        if container is None:
            return None
        if (container.labels or {}).get(LABEL_APPLIANCE) != self.instance:
            return None
        return _info(container)

    def find(self, *, build_id: int | None = None, project: str | None = None,
             role: str | None = None) -> list[ContainerInfo]:
        """This instance's containers (running or not) matching every given label."""
        wanted = {LABEL_APPLIANCE: self.instance}
        if build_id is not None:
            wanted[LABEL_BUILD] = str(build_id)
        if project is not None:
            wanted[LABEL_PROJECT] = project
        if role is not None:
            wanted[LABEL_ROLE] = role
        filters = {"label": [f"{key}={value}" for key, value in wanted.items()]}
        with engine_errors("listing containers"):
            found = self.client.containers.list(all=True, filters=filters,
                                                ignore_removed=True)
        return [_info(c) for c in found]
