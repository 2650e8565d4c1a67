"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import docker
import pytest
import requests


@pytest.fixture(scope="module")
def docker_client():
    """The Docker engine's client; the test is skipped where no engine answers."""
    try:
        engine = docker.from_env()
        engine.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        pytest.skip(f"the Docker engine is unreachable: {exc}")
    return engine
