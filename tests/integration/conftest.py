"""Fixtures of the integration tests that several modules share (the people, `app`,
`client_as` and `make_build` are in tests/conftest.py)."""

from __future__ import annotations

import docker
import pytest
import requests

from tests.helpers_web import Work


@pytest.fixture(scope="module")
def docker_client():
    """The Docker engine's client; the test is skipped where no engine answers."""
    try:
        engine = docker.from_env()
        engine.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        pytest.skip(f"the Docker engine is unreachable: {exc}")
    return engine


@pytest.fixture
def work(config, db, people, tmp_path):
    """acme's bare repository with `main` (production) and `feature/cart` started from it
    (development)."""
    work = Work(config, db, people["project"], tmp_path / "work")
    work.commit("Add the shop", {"shop/models.py": "price = 1\n"})
    work.commit("Add the cart", {"shop/cart.py": "items = []\n"}, branch="feature/cart",
                start="main")
    return work
