"""Address arithmetic for the projects' Docker networks: one /24 each, cut from
[runtime] network_pool, never overlapping a network Docker already has.

Docker's default address pools hold about 30 bridge networks; the appliance makes one per
project, so it chooses their subnets itself. Plain functions of `ipaddress`, no engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from appliance.errors import ConfigError

# Each project's network is one /24 (254 addresses) of [runtime] network_pool.
PROJECT_SUBNET_PREFIX = 24


def network_pool(value: str) -> ipaddress.IPv4Network:
    """[runtime] network_pool read as an IPv4 network of at least one /24."""
    try:
        pool = ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError as exc:
        raise ConfigError(f"[runtime] network_pool {value!r} is not an IPv4 network such "
                          f"as 10.213.0.0/16: {exc}") from None
    if pool.prefixlen > PROJECT_SUBNET_PREFIX:
        raise ConfigError(f"[runtime] network_pool {value!r} is smaller than one "
                          f"/{PROJECT_SUBNET_PREFIX}, the size of a project's network")
    return pool


def subnets_in_use(networks_attrs: Iterable[dict]) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of Docker networks, from their `docker network inspect` attrs."""
    used = []
    for attrs in networks_attrs:
        for pool in (attrs.get("IPAM") or {}).get("Config") or []:
            try:
                used.append(ipaddress.IPv4Network(pool.get("Subnet") or "", strict=False))
            except ValueError:  # IPv6, or no subnet: cannot overlap an IPv4 pool
                continue
    return used


def free_subnets(pool: ipaddress.IPv4Network,
                 used: list[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Network]:
    """The project-sized subnets of the pool that overlap no used subnet, in order."""
    for subnet in pool.subnets(new_prefix=PROJECT_SUBNET_PREFIX):
        if not any(subnet.overlaps(other) for other in used):
            yield subnet
