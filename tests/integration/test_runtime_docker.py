"""The Docker adapter against the real engine: limits, labels, timeouts, networks."""

from __future__ import annotations

import time
import uuid

import docker
import docker.errors
import pytest

from appliance.config import RuntimeConfig
from appliance.errors import DockerError
from appliance.runtime.docker import (LABEL_BUILD, LABEL_PROJECT, LABEL_ROLE, DockerRuntime,
                                      Mount)

pytestmark = pytest.mark.docker

PIDS_LIMIT = 48
MEMORY = "256m"
CPUS = 0.5
UID = 990


@pytest.fixture(scope="module")
def cfg(docker_client) -> RuntimeConfig:
    cfg = RuntimeConfig(pids_limit=PIDS_LIMIT, memory=MEMORY, cpus=CPUS, uid=UID,
                        network_prefix="appliance-test")
    try:
        docker_client.images.get(cfg.base_image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"the base image {cfg.base_image} is missing: run `make image`")
    return cfg


def _cleanup(runtime: DockerRuntime, projects: tuple[str, ...] = ("p",)) -> None:
    for info in runtime.find():
        runtime.remove(info.id)
    for project in projects:
        runtime.remove_network(project)


@pytest.fixture(scope="module")
def runtime(cfg, docker_client):
    runtime = DockerRuntime(cfg, instance=f"t{uuid.uuid4().hex[:10]}", client=docker_client)
    yield runtime
    _cleanup(runtime)


@pytest.fixture(scope="module")
def other(cfg, docker_client):
    """A second appliance on the same engine."""
    other = DockerRuntime(cfg, instance=f"t{uuid.uuid4().hex[:10]}", client=docker_client)
    yield other
    _cleanup(other)


@pytest.fixture(scope="module")
def network(runtime) -> str:
    return runtime.ensure_network("p")


def _run(runtime, network, script: str, *, name: str | None = None, build_id: int = 1,
         role: str = "task", publish: int | None = None, mounts=(), cfg_image=None):
    name = name or f"{runtime.instance}-{uuid.uuid4().hex[:8]}"
    labels = {LABEL_PROJECT: "p", LABEL_BUILD: str(build_id), LABEL_ROLE: role}
    return runtime.start(name=name, image=cfg_image or runtime.cfg.base_image,
                         command=["sh", "-c", script], labels=labels, mounts=list(mounts),
                         env={"GREETING": "hello"}, network=network, publish=publish)


def _wait_for_output(runtime, container_id: str, text: str, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = runtime.logs(container_id)
        if text in output:
            return output
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the logs: {runtime.logs(container_id)!r}")


def test_a_container_runs_non_root_with_every_limit_and_a_local_port(runtime, network):
    started = time.monotonic()
    info = _run(runtime, network, "id -u; id -g; echo $GREETING; sleep 30", publish=8069)
    start_seconds = time.monotonic() - started

    output = _wait_for_output(runtime, info.id, "hello")
    attrs = runtime.client.api.inspect_container(info.id)
    host = attrs["HostConfig"]
    assert output.split() == [str(UID), str(UID), "hello"]
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["Memory"] == host["MemorySwap"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == int(CPUS * 1e9)
    assert host["Privileged"] is False
    assert attrs["Config"]["Tty"] is False
    assert host["PortBindings"] == {"8069/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    bound = attrs["NetworkSettings"]["Ports"]["8069/tcp"]
    assert {b["HostIp"] for b in bound} == {"127.0.0.1"}
    assert info.host_port == int(bound[0]["HostPort"])
    assert info.status == "running" and info.role == "task" and info.build_id == 1
    assert start_seconds < 10


def test_wait_returns_the_exit_code_and_the_logs_hold_stdout_and_stderr(runtime, network):
    info = _run(runtime, network, "echo to-stdout; echo to-stderr >&2; exit 3")

    assert runtime.wait(info.id, timeout=30) == 3
    assert "to-stdout" in runtime.logs(info.id) and "to-stderr" in runtime.logs(info.id)
    assert runtime.get(info.id).exit_code == 3


def test_find_by_build_label_sees_only_this_instance(runtime, other, network):
    ours = _run(runtime, network, "sleep 30", build_id=42, role="server")
    theirs = _run(other, other.ensure_network("p"), "sleep 30", build_id=42, role="server")

    assert [c.id for c in runtime.find(build_id=42)] == [ours.id]
    assert [c.id for c in runtime.find(project="p", role="server")] == [ours.id]
    assert runtime.find(build_id=43) == []
    assert runtime.get(theirs.id) is None
    assert [c.id for c in other.find(build_id=42)] == [theirs.id]


def test_a_name_held_by_another_instance_is_never_taken_over(runtime, other, network):
    theirs = _run(other, other.ensure_network("p"), "exit 0")
    other.wait(theirs.id, timeout=30)

    with pytest.raises(DockerError, match="does not own"):
        _run(runtime, network, "exit 0", name=theirs.name)
    assert other.get(theirs.id) is not None


def test_a_stopped_container_gives_its_name_to_a_new_one_but_a_running_one_does_not(
        runtime, network):
    first = _run(runtime, network, "exit 0")
    runtime.wait(first.id, timeout=30)
    second = _run(runtime, network, "sleep 30", name=first.name)

    assert runtime.get(first.id) is None
    with pytest.raises(DockerError, match="already running"):
        _run(runtime, network, "sleep 30", name=second.name)


def test_stop_and_remove_leave_nothing_behind(runtime, network):
    info = _run(runtime, network, "sleep 300", build_id=77)

    runtime.stop(info.id, timeout=1)
    assert runtime.get(info.id).status == "exited"
    runtime.remove(info.id)

    assert runtime.get(info.id) is None
    assert runtime.find(build_id=77) == []
    runtime.stop(info.id)
    runtime.remove(info.id)


def test_a_wait_past_its_timeout_kills_the_container(runtime, network):
    info = _run(runtime, network, "sleep 300")

    with pytest.raises(DockerError, match="timed out after 1 s"):
        runtime.wait(info.id, timeout=1)
    assert runtime.get(info.id).status == "exited"


def test_a_fork_bomb_hits_the_pids_limit_and_the_engine_carries_on(runtime, network):
    # Far more background processes than the limit allows; each one ends by itself.
    script = "for i in $(seq 1 200); do sleep 5 & done; wait; echo all-forked"
    info = _run(runtime, network, script)

    code = runtime.wait(info.id, timeout=60)
    output = runtime.logs(info.id)
    assert code != 0
    assert "fork" in output.lower() and "all-forked" not in output
    assert runtime.version()


def test_the_docker_socket_is_never_mounted(runtime, network):
    with pytest.raises(DockerError, match="Docker socket"):
        _run(runtime, network, "true", mounts=[Mount("/var/run/docker.sock", "/s")])


def test_a_missing_image_is_an_error_and_leaves_no_container(runtime, network):
    name = f"{runtime.instance}-missing"
    with pytest.raises(DockerError, match="appliance/no-such-image"):
        _run(runtime, network, "true", name=name, cfg_image="appliance/no-such-image:1")
    assert runtime.get(name) is None


def test_mounts_are_read_only_unless_asked(runtime, network, tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw").chmod(0o777)
    mounts = [Mount(str(tmp_path / "ro"), "/ro"), Mount(str(tmp_path / "rw"), "/rw", False)]
    script = "touch /ro/x || echo ro-refused; touch /rw/x && echo rw-ok"
    info = _run(runtime, network, script, mounts=mounts)

    runtime.wait(info.id, timeout=30)
    assert "ro-refused" in runtime.logs(info.id) and "rw-ok" in runtime.logs(info.id)
    assert (tmp_path / "rw" / "x").exists() and not (tmp_path / "ro" / "x").exists()


def test_the_ca_bundle_is_mounted_with_the_variables_tools_read(cfg, docker_client, tmp_path):
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    bundle.chmod(0o644)
    tmp_path.chmod(0o755)
    with_ca = RuntimeConfig(**{**cfg.__dict__, "ca_bundle": str(bundle)})
    runtime = DockerRuntime(with_ca, instance=f"t{uuid.uuid4().hex[:10]}", client=docker_client)
    try:
        info = _run(runtime, runtime.ensure_network("p"),
                    "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $PIP_CERT; head -1 $PIP_CERT")
        runtime.wait(info.id, timeout=30)
        output = runtime.logs(info.id).split("\n")
    finally:
        _cleanup(runtime)
    assert output[0] == " ".join(["/etc/appliance/ca-bundle.crt"] * 3)
    assert output[1] == "-----BEGIN CERTIFICATE-----"


def test_the_project_network_is_created_once_and_removed(runtime, docker_client):
    first = runtime.ensure_network("net-test")
    second = runtime.ensure_network("net-test")

    found = [n for n in docker_client.networks.list(names=[first]) if n.name == first]
    assert first == second == f"appliance-test-{runtime.instance}-net-test"
    assert len(found) == 1
    assert found[0].attrs["Labels"]["appliance.instance"] == runtime.instance
    runtime.remove_network("net-test")
    runtime.remove_network("net-test")
    assert [n for n in docker_client.networks.list(names=[first]) if n.name == first] == []


def test_an_unreachable_engine_is_a_clear_docker_error(cfg):
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    runtime = DockerRuntime(cfg, instance="unreachable", client=client)

    with pytest.raises(DockerError, match="cannot reach the Docker engine"):
        runtime.version()
