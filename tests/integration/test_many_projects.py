"""Many projects on one engine: each project's network is a /24 of [runtime] network_pool,
not one of Docker's default pools, which run out at about 30 networks."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import uuid

import pytest

from appliance.config import RuntimeConfig
from appliance.errors import ConfigError, DockerError
from appliance.runtime.docker import DockerRuntime
from tests.host import ROOT
from tests.integration.harness import Appliance, make_repo, push

pytestmark = pytest.mark.docker

PROJECTS = 60


def subnet_of(docker_client, name: str) -> ipaddress.IPv4Network:
    attrs = docker_client.networks.get(name).attrs
    (pool,) = attrs["IPAM"]["Config"]
    return ipaddress.IPv4Network(pool["Subnet"])


def remove_networks(runtime: DockerRuntime, projects) -> None:
    for project in projects:
        runtime.remove_network(project)


@pytest.fixture
def runtime(docker_client):
    """A runtime of its own on a small pool no other test uses."""
    cfg = RuntimeConfig(network_prefix="appliance-test", network_pool="10.219.4.0/22")
    return DockerRuntime(cfg, instance=f"t{uuid.uuid4().hex[:10]}", client=docker_client)


def test_sixty_projects_get_networks_and_the_last_one_builds(tmp_path, docker_client):
    app = Appliance(tmp_path, "many")
    others = [f"many{number:02d}" for number in range(1, PROJECTS)]
    try:
        names = [app.svc.docker.ensure_network(project) for project in others]
        app.start()
        token = app.make_user("admin")
        app.make_project("last")
        repo = make_repo(tmp_path / "repo", "green")
        _, (build_id,) = push(repo, app.remote("last", "admin", token), "feature")
        build = app.wait_build(build_id)
        assert (build["state"], build["result"]) == ("running", "success"), build["reason"]

        names.append(app.svc.docker.network_name("last"))
        subnets = [subnet_of(docker_client, name) for name in names]
        pool = ipaddress.IPv4Network(app.config.runtime.network_pool)
        assert len(set(subnets)) == PROJECTS
        assert all(s.subnet_of(pool) and s.prefixlen == 24 for s in subnets), subnets
    finally:
        remove_networks(app.svc.docker, others)
        app.close()
    assert not [n for n in docker_client.networks.list() if n.name in names]


def test_a_subnet_docker_already_uses_is_skipped_and_a_full_pool_says_so(runtime,
                                                                          docker_client):
    foreign = docker_client.networks.create(
        f"appliance-test-foreign-{runtime.instance}", driver="bridge",
        ipam={"Driver": "default", "Config": [{"Subnet": "10.219.5.0/24"}]})
    projects = ["a", "b", "c", "d"]
    try:
        made = [runtime.ensure_network(project) for project in projects[:3]]
        assert [str(subnet_of(docker_client, name)) for name in made] == [
            "10.219.4.0/24", "10.219.6.0/24", "10.219.7.0/24"]
        with pytest.raises(DockerError, match=r"no free /24 left in \[runtime\] "
                                              r"network_pool 10\.219\.4\.0/22"):
            runtime.ensure_network("d")
        assert runtime.ensure_network("a") == made[0]
    finally:
        remove_networks(runtime, projects)
        foreign.remove()


def test_a_bad_pool_is_a_config_error_and_creates_no_network(runtime, docker_client):
    runtime.cfg.network_pool = "10.219.4.0/25"
    with pytest.raises(ConfigError, match="smaller than one /24"):
        runtime.ensure_network("bad")
    assert not docker_client.networks.list(names=[runtime.network_name("bad")])


RACER = """
import sys
from appliance.config import RuntimeConfig
from appliance.runtime.docker import DockerRuntime
cfg = RuntimeConfig(network_prefix="appliance-test", network_pool="10.219.8.0/22")
runtime = DockerRuntime(cfg, instance=sys.argv[1])
print(runtime.ensure_network(sys.argv[2]))
"""


def test_processes_creating_networks_at_once_get_different_subnets(docker_client):
    instance = f"t{uuid.uuid4().hex[:10]}"
    runtime = DockerRuntime(RuntimeConfig(network_prefix="appliance-test"), instance=instance,
                            client=docker_client)
    projects = ["r1", "r2", "r3", "r4"]
    try:
        racers = [subprocess.Popen([sys.executable, "-c", RACER, instance, project], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for project in projects]
        results = [racer.communicate(timeout=120) for racer in racers]
        assert all(racer.returncode == 0 for racer in racers), results
        subnets = {subnet_of(docker_client, out.strip()) for out, _ in results}
        assert {str(s) for s in subnets} == {f"10.219.{n}.0/24" for n in (8, 9, 10, 11)}
    finally:
        remove_networks(runtime, projects)
