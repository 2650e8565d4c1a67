"""Runtime and project images built by the real engine (needs apt and PyPI access).

The runtime image uses the suite's small package list, so it builds in well under a
minute and is shared with the other tests; it is kept between runs (the cache is the
point). Project images get a unique requirements
file per run, so each run really builds them, and are removed afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from appliance.config import RuntimeConfig
from appliance.errors import ConfigError, ImageBuildError, UserError
from appliance.runtime import images
from appliance.runtime.docker import LABEL_PROJECT, DockerRuntime
from tests.host import TEST_PACKAGES

pytestmark = pytest.mark.docker

HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _ca_bundle() -> str:
    configured = os.environ.get("APPLIANCE_TEST_CA_BUNDLE")
    if configured is not None:
        return configured
    return HOST_CA_BUNDLE if os.path.exists(HOST_CA_BUNDLE) else ""


@pytest.fixture(scope="module")
def cfg() -> RuntimeConfig:
    return RuntimeConfig(debian_packages=list(TEST_PACKAGES), ca_bundle=_ca_bundle(),
                         memory="1g", network_prefix="appliance-test")


@pytest.fixture(scope="module")
def runtime(cfg, docker_client):
    # No shared client: the runtime makes one per thread, as the daemon's workers do.
    runtime = DockerRuntime(cfg, instance=f"t{uuid.uuid4().hex[:10]}")
    try:
        images.ensure_base_image(runtime, cfg)
    except ConfigError as exc:
        pytest.skip(f"no base image and none can be built here: {exc}")
    yield runtime
    for info in runtime.find():
        runtime.remove(info.id)
    runtime.remove_network("images")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("image-logs")


@pytest.fixture(scope="module")
def runtime_tag(runtime, cfg, logs) -> str:
    return images.runtime_image(runtime, cfg, logs / "runtime.log").tag


@pytest.fixture
def run_requirements(docker_client):
    """Requirements unique to this run (so the image is really built), removed after."""
    marker = f"# test run {uuid.uuid4().hex}\n".encode()
    tags: list[str] = []
    yield marker, tags
    for tag in tags:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def _run(runtime, image: str, script: str) -> tuple[int, str]:
    network = runtime.ensure_network("images")
    info = runtime.start(name=f"{runtime.instance}-{uuid.uuid4().hex[:8]}", image=image,
                         command=["sh", "-c", script], labels={LABEL_PROJECT: "images"},
                         mounts=[], env={}, network=network)
    code = runtime.wait(info.id, timeout=60)
    return code, runtime.logs(info.id)


def test_the_runtime_image_is_cached_the_second_time(runtime, cfg, runtime_tag, logs):
    again = images.runtime_image(runtime, cfg, logs / "runtime.log")

    assert again.tag == runtime_tag
    assert again.cached is True
    assert again.seconds < 2
    assert images.image_exists(runtime, runtime_tag)


def test_the_runtime_image_runs_as_the_configured_uid_with_python(runtime, cfg,
                                                                  runtime_tag):
    image = runtime.client.images.get(runtime_tag)
    code, output = _run(runtime, runtime_tag,
                        "id -u; id -un; pwd; echo $PYTHONPYCACHEPREFIX; "
                        "python3 -c 'import psycopg2; print(\"psycopg2 ok\")'")

    assert image.attrs["Config"]["User"] == "odoo"
    assert code == 0, output
    assert output.split() == [str(cfg.uid), "odoo", "/var/lib/odoo",
                              "/var/cache/odoo-pycache", "psycopg2", "ok"]


def test_no_requirements_and_no_apt_reuse_the_runtime_image(runtime, cfg, runtime_tag,
                                                            logs):
    result = images.project_image(runtime, cfg, runtime_tag, None, None, logs / "pip.log")

    assert (result.tag, result.cached, result.seconds) == (runtime_tag, True, 0)


def test_requirements_and_apt_packages_are_installed_once_for_concurrent_builds(
        runtime, cfg, runtime_tag, tmp_path, run_requirements):
    marker, cleanup = run_requirements
    requirements = marker + b"six\n"
    apt = b"# a small tool\nfile\n"
    results = []

    def build(name: str) -> None:
        results.append(images.project_image(runtime, cfg, runtime_tag, requirements, apt,
                                            tmp_path / name))

    threads = [threading.Thread(target=build, args=(f"pip-{n}.log",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    cleanup.extend({r.tag for r in results})

    assert len(results) == 2 and results[0].tag == results[1].tag
    assert sorted(r.cached for r in results) == [False, True]
    pip_log = "".join(p.read_text() for p in tmp_path.glob("pip-*.log"))
    assert "Successfully installed six" in pip_log
    code, output = _run(runtime, results[0].tag,
                        "id -u; python3 -c 'import six; print(\"six\", six.__version__)'; "
                        "file --version | head -1")
    assert code == 0, output
    assert output.split()[:2] == [str(cfg.uid), "six"] and "file-" in output


def test_a_bad_apt_line_is_refused_before_any_build(runtime, cfg, runtime_tag, tmp_path):
    apt = b"# tools\ncurl\nfoo; rm -rf /\n"

    started = time.monotonic()
    with pytest.raises(UserError, match=r"apt.txt line 3: 'foo; rm -rf /'"):
        images.project_image(runtime, cfg, runtime_tag, None, apt, tmp_path / "pip.log")
    assert time.monotonic() - started < 1
    assert not (tmp_path / "pip.log").exists()


def test_a_nonexistent_pip_package_fails_the_build_naming_it(
        runtime, cfg, runtime_tag, tmp_path, run_requirements):
    marker, _ = run_requirements
    package = f"appliance-no-such-package-{uuid.uuid4().hex[:8]}"

    with pytest.raises(ImageBuildError) as failure:
        images.project_image(runtime, cfg, runtime_tag, marker + package.encode() + b"\n",
                             None, tmp_path / "pip.log")
    assert f"No matching distribution found for {package}" in str(failure.value)
    assert package in (tmp_path / "pip.log").read_text()


def test_a_package_list_a_shell_would_interpret_is_a_config_error(runtime, cfg, logs):
    bad = RuntimeConfig(**{**cfg.__dict__, "debian_packages": ["python3", "x && reboot"]})

    with pytest.raises(ConfigError, match="x && reboot"):
        images.runtime_image(runtime, bad, logs / "bad.log")


def test_apt_txt_parsing_keeps_names_and_versions_and_drops_comments():
    data = b"# comment\n\nlibxml2-dev\nwkhtmltopdf=0.12.6-2  # pinned\nc++-tools\n"

    assert images.parse_apt(data) == ["libxml2-dev", "wkhtmltopdf=0.12.6-2", "c++-tools"]


def test_a_missing_base_image_needs_root_to_be_built(runtime, cfg, monkeypatch):
    missing = RuntimeConfig(**{**cfg.__dict__, "base_image": "appliance/no-such-base:1"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(ConfigError, match="needs root"):
        images.ensure_base_image(runtime, missing)


def test_a_missing_debootstrap_says_what_to_install(runtime, cfg, monkeypatch):
    missing = RuntimeConfig(**{**cfg.__dict__, "base_image": "appliance/no-such-base:1"})
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(images.shutil, "which", lambda name: None)

    with pytest.raises(ConfigError, match="apt-get install debootstrap"):
        images.ensure_base_image(runtime, missing)
