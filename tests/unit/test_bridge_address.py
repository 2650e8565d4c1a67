"""Where build containers reach the host, read from each shape of `docker network inspect`."""

import pytest

from appliance.errors import DockerError
from appliance.runtime.docker_networks import bridge_host_address


def no_interface(name):
    return None


def test_the_ipam_gateway_is_used_when_docker_reports_one():
    attrs = {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
             "Options": {"com.docker.network.bridge.name": "docker0"}}
    assert bridge_host_address(attrs, lambda name: "10.9.9.9") == (
        "172.17.0.1", "the bridge's IPAM gateway")


def test_a_fresh_dockerd_without_gateway_key_falls_back_to_the_bridge_interface():
    attrs = {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]},
             "Options": {"com.docker.network.bridge.name": "docker0"}}
    seen = []
    address, source = bridge_host_address(attrs, lambda name: seen.append(name) or "172.17.0.1")
    assert (address, seen) == ("172.17.0.1", ["docker0"])
    assert "docker0" in source


def test_without_gateway_or_interface_the_subnets_first_host_is_used():
    attrs = {"IPAM": {"Config": [{"Subnet": "10.200.0.0/24"}]}, "Options": {}}
    assert bridge_host_address(attrs, no_interface) == (
        "10.200.0.1", "the first host of 10.200.0.0/24")


def test_ipv6_pools_are_never_chosen():
    attrs = {"IPAM": {"Config": [{"Subnet": "fd00::/64", "Gateway": "fd00::1"},
                                 {"Subnet": "172.18.0.0/16"}]}}
    assert bridge_host_address(attrs, no_interface)[0] == "172.18.0.1"


def test_a_bridge_with_nothing_to_go_on_is_a_clear_error():
    with pytest.raises(DockerError, match="listen_host"):
        bridge_host_address({"IPAM": {"Config": None}}, no_interface)
