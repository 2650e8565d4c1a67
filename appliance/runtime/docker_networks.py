"""The projects' Docker networks, and where containers reach the host.

Each project gets a bridge network of its own on a /24 of [runtime] network_pool
(runtime.subnets does the arithmetic). Mixed into runtime.docker.DockerRuntime, whose
`client`, `cfg` and `instance` it uses.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct
import threading

import docker.errors
import docker.types

from appliance.errors import DockerError
from appliance.runtime.docker_engine import (LABEL_APPLIANCE, LABEL_PROJECT, engine_errors,
                                             sanitize)
from appliance.runtime.subnets import (PROJECT_SUBNET_PREFIX, free_subnets, network_pool,
                                       subnets_in_use)

log = logging.getLogger(__name__)

_network_lock = threading.Lock()

# ioctl asking Linux for an interface's IPv4 address (linux/sockios.h).
SIOCGIFADDR = 0x8915

# Creating a network on a /24 that another process took meanwhile fails with an
# overlap; the next free one is tried, this many times at most.
NETWORK_ATTEMPTS = 16


def _overlap_refused(exc: DockerError) -> bool:
    """Docker refused a subnet because a network it knows already uses it."""
    return isinstance(exc.__cause__, docker.errors.APIError) and "overlap" in str(exc).lower()


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of a network interface of this host, or None."""
    if not name or len(name) >= 16:
        return None
    packed = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, packed)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def bridge_host_address(attrs: dict, lookup=interface_ipv4) -> tuple[str, str]:
    """Where containers on a bridge reach the host, from `docker network inspect`'s
    attributes, and which source said so. Docker 20.10 started without daemon.json
    reports the default bridge's IPAM config without a Gateway key, so the IPAM
    gateway is tried first, then the bridge interface's own address, then the
    subnet's first host (where dockerd puts the gateway by default)."""
    pools = [p for p in (attrs.get("IPAM") or {}).get("Config") or []
             if ":" not in (p.get("Subnet") or "") and ":" not in (p.get("Gateway") or "")]
    for pool in pools:
        if pool.get("Gateway"):
            return pool["Gateway"].split("/")[0], "the bridge's IPAM gateway"
    bridge = ((attrs.get("Options") or {}).get("com.docker.network.bridge.name") or "")
    address = lookup(bridge) if bridge else None
    if address:
        return address, f"the address of interface {bridge}"
    for pool in pools:
        if pool.get("Subnet"):
            network = ipaddress.ip_network(pool["Subnet"], strict=False)
            if network.num_addresses > 2:
                return str(network.network_address + 1), f"the first host of {network}"
    raise DockerError("Docker's default bridge network has no IPv4 gateway, interface "
                      "address or subnet: set [mail] listen_host to an address of this "
                      "host containers reach")


class NetworksMixin:
    """Network methods of DockerRuntime."""

    def network_name(self, project: str) -> str:
        return sanitize(f"{self.cfg.network_prefix}-{self.instance}-{project}")

    def _networks(self, name: str) -> list:
        # The engine's name filter matches substrings: keep exact matches only.
        with engine_errors(f"listing networks named {name}"):
            return [n for n in self.client.networks.list(names=[name]) if n.name == name]

    def ensure_network(self, project: str) -> str:
        """A bridge network for the project's containers on the first free /24 of
        [runtime] network_pool (Docker's default pools hold only ~30 networks); safe to
        call again, and from several processes at once."""
        name = self.network_name(project)
        pool = network_pool(self.cfg.network_pool)
        with _network_lock:
            if self._networks(name):
                return name
            with engine_errors("listing networks"):
                used = subnets_in_use(n.attrs for n in self.client.networks.list())
            for attempt, subnet in enumerate(free_subnets(pool, used)):
                if attempt == NETWORK_ATTEMPTS:
                    raise DockerError(f"creating network {name}: Docker refused "
                                      f"{attempt} subnets of {pool} as overlapping")
                if self._create_network(name, project, subnet):
                    return name
        raise DockerError(f"no free /{PROJECT_SUBNET_PREFIX} left in [runtime] network_pool "
                          f"{pool} for network {name}: widen the pool, or remove the "
                          "networks of projects no longer used")

    def _create_network(self, name: str, project: str, subnet) -> bool:
        """Create the network on `subnet` (True), or find it made meanwhile by another
        process (True); False when Docker says the subnet was taken meanwhile."""
        labels = {LABEL_APPLIANCE: self.instance, LABEL_PROJECT: project}
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(subnet), gateway=str(subnet.network_address + 1))])
        try:
            with engine_errors(f"creating network {name} on {subnet}"):
                self.client.networks.create(name, driver="bridge", labels=labels, ipam=ipam,
                                            check_duplicate=True)
        except DockerError as exc:
            if _overlap_refused(exc):
                log.info("network %s: %s was taken meanwhile, trying the next", name, subnet)
                return False
            if self._networks(name):
                return True
            raise
        log.info("created network %s on %s", name, subnet)
        return True

    def gateway(self) -> str:
        """The address on this host that containers reach it at: an address of the
        default bridge, which the outside does not route to (see bridge_host_address)."""
        with engine_errors("reading the default bridge network"):
            network = self.client.networks.get("bridge")
        address, source = bridge_host_address(network.attrs, interface_ipv4)
        if not getattr(self, "_gateway_said", False):
            log.info("containers reach this host at %s (%s)", address, source)
            self._gateway_said = True
        return address

    def remove_network(self, project: str) -> None:
        name = self.network_name(project)
        for network in self._networks(name):
            try:
                with engine_errors(f"removing network {name}"):
                    network.remove()
            except DockerError as exc:
                if not isinstance(exc.__cause__, docker.errors.NotFound):
                    raise
            log.info("removed network %s", name)

    # Containers -------------------------------------------------------------------
