"""The Docker engine's connection: the client, its errors, names and labels.

Shared by the containers (runtime.docker) and the networks (runtime.docker_networks).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import docker
import docker.errors
import requests.exceptions

from appliance.errors import DockerError

LABEL_PROJECT = "appliance.project"
LABEL_BUILD = "appliance.build"
LABEL_ROLE = "appliance.role"  # "install" | "server" | "task"
LABEL_APPLIANCE = "appliance.instance"

ROLES = ("install", "server", "task")


def engine_address() -> str:
    """The engine the SDK talks to, for error messages."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def _unreachable(exc: Exception) -> DockerError:
    return DockerError(f"cannot reach the Docker engine at {engine_address()}: "
                       f"is dockerd running? ({exc})")


@contextmanager
def engine_errors(action: str):
    """Turn the SDK's exceptions into DockerError, saying what was being done."""
    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        raise _unreachable(exc) from exc
    except requests.exceptions.RequestException as exc:
        raise DockerError(f"{action}: {exc}") from exc
    except docker.errors.APIError as exc:
        raise DockerError(f"{action}: {exc.explanation or exc}") from exc
    except docker.errors.DockerException as exc:
        raise DockerError(f"{action}: {exc}") from exc


def _timed_out(exc: BaseException | None) -> bool:
    """A read timeout, as the SDK reports it (a ConnectionError on a unix socket)."""
    if isinstance(exc, requests.exceptions.Timeout):
        return True
    return isinstance(exc, requests.exceptions.ConnectionError) and "timed out" in str(exc)


def connect():
    """A client for the engine named by the environment (DOCKER_HOST or the socket)."""
    try:
        return docker.from_env()
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise _unreachable(exc) from exc


def sanitize(name: str) -> str:
    """A Docker-safe name: lower case letters, digits, '-', '_' and '.'."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")
    return cleaned or "x"
