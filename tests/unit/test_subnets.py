"""Choosing the subnets of projects' networks from [runtime] network_pool."""

import ipaddress
from itertools import islice

import pytest

from appliance.errors import ConfigError
from appliance.runtime.subnets import free_subnets, network_pool, subnets_in_use

POOL = ipaddress.IPv4Network("10.213.0.0/16")


def first(pool, used, count=1):
    return [str(s) for s in islice(free_subnets(pool, used), count)]


def test_an_empty_pool_yields_its_24s_in_order():
    assert first(POOL, [], 3) == ["10.213.0.0/24", "10.213.1.0/24", "10.213.2.0/24"]


def test_a_16_pool_holds_256_project_networks():
    assert len(list(free_subnets(POOL, []))) == 256


def test_subnets_used_by_any_network_are_skipped_whatever_their_size():
    used = subnets_in_use([
        {"IPAM": {"Config": [{"Subnet": "10.213.0.0/24", "Gateway": "10.213.0.1"}]}},
        {"IPAM": {"Config": [{"Subnet": "10.213.1.128/25"}]}},
        {"IPAM": {"Config": [{"Subnet": "10.213.2.0/23"}]}},
        {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}},
    ])
    assert first(POOL, used) == ["10.213.4.0/24"]


def test_a_network_covering_the_whole_pool_leaves_nothing_free():
    used = subnets_in_use([{"IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}}])
    assert first(POOL, used) == []


def test_networks_without_ipv4_subnets_are_ignored():
    used = subnets_in_use([
        {"IPAM": {"Config": []}}, {"IPAM": None}, {},
        {"IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Gateway": "10.213.0.1"}]}},
    ])
    assert used == []


@pytest.mark.parametrize("value", ["", "not a network", "10.213.0.1/16", "10.213.0.0/25",
                                   "fd00::/48", "10.213.0.0/33"])
def test_a_bad_pool_is_a_clear_config_error(value):
    with pytest.raises(ConfigError, match=r"\[runtime\] network_pool"):
        network_pool(value)


def test_a_pool_is_read_as_an_ipv4_network():
    assert network_pool(" 10.213.0.0/16 ") == POOL
    assert network_pool("192.168.77.0/24").num_addresses == 256
