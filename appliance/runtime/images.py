"""Runtime images: a Debian base, Odoo's Debian dependencies, a project's extras.

Three layers, each cached by a hash of what went into it:

- the base image (`runtime.base_image`): a local image, imported from a debootstrapped
  root file system when missing, so no image registry is ever needed;
- the runtime image: the base plus the configured Debian packages and the `odoo` user;
- the project image: the runtime image plus a branch's apt.txt and requirements.txt.

Builds of one tag are serialized in this process, so two builds needing the same image
at once build it once. Build output is appended to the log file the caller names.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import docker.utils

from appliance.config import RuntimeConfig
from appliance.errors import ApplianceError, ConfigError, DockerError, ImageBuildError
from appliance.runtime import buildfs
from appliance.runtime.docker import DockerRuntime, engine_errors
# PYCACHE_DIR is named here too: the containers module takes it from the images.
from appliance.runtime.image_recipes import (PYCACHE_DIR, SHELL_PACKAGES,  # noqa: F401
                                             parse_apt, project_dockerfile,
                                             runtime_dockerfile, shell_tools,
                                             validate_packages)

logger = logging.getLogger(__name__)

# Bump when a Dockerfile below changes, so every image is rebuilt with the new recipe.
RECIPE_VERSION = "1"
RUNTIME_REPOSITORY = "appliance/odoo-runtime"
PROJECT_REPOSITORY = "appliance/odoo-project"
IMAGE_LABEL = "appliance.image"  # "runtime" | "project"
# Images under this namespace are made here and never pulled: on a public registry the
# namespace belongs to someone else.
LOCAL_NAMESPACE = "appliance/"
# Lines of a failed build's output that say what went wrong (pip, apt, dpkg, shell).
ERROR_LINE_RE = re.compile(r"^(ERROR:|E:|error:|dpkg: error|.*: not found$)")
# The engine colours a build's stderr; the log is read in a browser and parsed here.
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\r")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass
class ImageResult:
    tag: str
    cached: bool
    seconds: float


def image_exists(runtime: DockerRuntime, tag: str) -> bool:
    try:
        with engine_errors(f"inspecting image {tag}"):
            runtime.client.images.get(tag)
    except DockerError as exc:
        if isinstance(exc.__cause__, docker.errors.ImageNotFound):
            return False
        raise
    return True


def _image_id(runtime: DockerRuntime, tag: str) -> str:
    with engine_errors(f"inspecting image {tag}"):
        return runtime.client.images.get(tag).id


@contextmanager
def _tag_lock(tag: str):
    with _locks_guard:
        lock = _locks.setdefault(tag, threading.Lock())
    with lock:
        yield


@contextmanager
def _output(path: Path | None):
    """A function writing build output to `path` (appended), or to debug logging."""
    if path is None:
        yield lambda text: logger.debug("%s", text.rstrip())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with buildfs.open_append(path.parent, path.name) as handle:
        def write(text: str) -> None:
            handle.write(text)
            handle.flush()
        yield write


def _digest(*parts: bytes | str) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(str(len(data)).encode() + b":" + data + b"\0")
    return sha.hexdigest()[:16]


# The base image ------------------------------------------------------------------------

def ensure_base_image(runtime: DockerRuntime, cfg: RuntimeConfig,
                      log: Path | None = None) -> ImageResult:
    """The configured base image: found, pulled, or built with debootstrap; re-runnable."""
    started = time.monotonic()
    tag = cfg.base_image
    with _tag_lock(tag):
        if image_exists(runtime, tag):
            return ImageResult(tag, cached=True, seconds=time.monotonic() - started)
        with _output(log) as write:
            if not _pull(runtime, tag, write):
                _debootstrap_import(runtime, cfg, write)
    return ImageResult(tag, cached=False, seconds=time.monotonic() - started)


def _pull(runtime: DockerRuntime, tag: str, write) -> bool:
    if tag.startswith(LOCAL_NAMESPACE):
        return False
    repository, version = docker.utils.parse_repository_tag(tag)
    try:
        with engine_errors(f"pulling {tag}"):
            runtime.client.images.pull(repository, tag=version or "latest")
    except DockerError as exc:
        write(f"pull of {tag} failed, building it instead: {exc}\n")
        return False
    write(f"pulled {tag}\n")
    return True


def _check_debootstrap() -> str:
    if os.geteuid() != 0:
        raise ConfigError("building the base image with debootstrap needs root: run "
                          "scripts/setup-host.sh (or this command) as root once")
    path = shutil.which("debootstrap")
    if path is None:
        raise ConfigError("building the base image needs the debootstrap command: "
                          "apt-get install debootstrap")
    return path


def _debootstrap_import(runtime: DockerRuntime, cfg: RuntimeConfig, write) -> None:
    debootstrap = _check_debootstrap()
    rootfs = Path(tempfile.mkdtemp(prefix="appliance-rootfs-"))
    try:
        command = [debootstrap, "--variant=minbase", cfg.debian_suite, str(rootfs),
                   cfg.debian_mirror]
        _run_logged(command, write, f"debootstrap of {cfg.debian_suite}")
        _import_tree(runtime, rootfs, cfg.base_image)
        write(f"imported {cfg.base_image}\n")
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)


def _run_logged(command: list[str], write, what: str) -> None:
    tail: deque[str] = deque(maxlen=20)
    write("$ " + shlex.join(command) + "\n")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        for line in proc.stdout:
            write(line)
            tail.append(line.rstrip())
    if proc.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): "
                              f"{_meaningful(tail) or 'no output'}")


def _import_tree(runtime: DockerRuntime, rootfs: Path, tag: str) -> None:
    """Stream a tar of `rootfs` into the engine as image `tag`; no tarball on disk."""
    repository, version = docker.utils.parse_repository_tag(tag)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    chunks = iter(lambda: tar.stdout.read(1 << 20), b"")
    try:
        with engine_errors(f"importing {tag}"):
            runtime.client.api.import_image(src=chunks, repository=repository,
                                            tag=version or "latest", stream_src=True)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise ImageBuildError(f"tar of the root file system failed "
                                  f"(exit {tar.returncode})")


def _unmount_below(root: Path) -> None:
    """Unmount what an interrupted debootstrap left mounted (proc, sys) before deleting."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


# Building ------------------------------------------------------------------------------

def _build(runtime: DockerRuntime, cfg: RuntimeConfig, *, tag: str, dockerfile: str,
           files: dict[str, bytes], kind: str, log_path: Path) -> None:
    """`docker build` of a context made of `dockerfile` and `files`, output to the log."""
    memory = docker.utils.parse_bytes(cfg.memory)
    with tempfile.TemporaryDirectory(prefix="appliance-build-") as context, \
            _output(log_path) as write:
        _write_context(Path(context), dockerfile, files)
        write(f"building {tag}\n")
        with engine_errors(f"building image {tag}"):
            stream = runtime.client.api.build(
                path=context, tag=tag, rm=True, forcerm=True, decode=True, pull=False,
                labels={IMAGE_LABEL: kind},
                container_limits={"memory": memory, "memswap": memory})
        _follow(runtime, stream, tag, write, log_path)


def _write_context(context: Path, dockerfile: str, files: dict[str, bytes]) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    for name, data in files.items():
        path = context / name
        path.write_bytes(data)
        path.chmod(0o644)


def _follow(runtime: DockerRuntime, stream, tag: str, write, log_path: Path) -> None:
    tail: deque[str] = deque(maxlen=200)
    with engine_errors(f"building image {tag}"):
        for chunk in stream:
            text = ANSI_RE.sub("", chunk.get("stream") or "")
            if text:
                write(text)
                tail.extend(text.splitlines())
            if "error" in chunk:
                write(chunk["error"] + "\n")
                reason = _meaningful(tail) or chunk["error"].strip()
                raise ImageBuildError(f"building image {tag} failed: {reason} "
                                      f"(full output in {log_path.name})")
    if not image_exists(runtime, tag):
        raise ImageBuildError(f"building image {tag} ended without the image "
                              f"(full output in {log_path.name})")


def _meaningful(lines) -> str:
    """The last line that names an error, else the last non-empty line."""
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if ERROR_LINE_RE.match(line):
            return line
    return lines[-1] if lines else ""


# The runtime image ---------------------------------------------------------------------

def _ca_bytes(cfg: RuntimeConfig) -> bytes:
    if not cfg.ca_bundle:
        return b""
    try:
        return Path(cfg.ca_bundle).read_bytes()
    except OSError as exc:
        raise ConfigError(f"[runtime] ca_bundle: cannot read {cfg.ca_bundle}: "
                          f"{exc.strerror}") from None


def runtime_image(runtime: DockerRuntime, cfg: RuntimeConfig, log: Path) -> ImageResult:
    """The base image plus the configured Debian packages, the `odoo` user and what its
    terminal offers (image_recipes.SHELL_PACKAGES and the shell tools)."""
    started = time.monotonic()
    packages = sorted(set(validate_packages(list(cfg.debian_packages),
                                            "[runtime] debian_packages"))
                      | {"python3", *SHELL_PACKAGES})
    ca = _ca_bytes(cfg)
    tools = shell_tools()
    ensure_base_image(runtime, cfg, log)
    base_id = _image_id(runtime, cfg.base_image)
    tag = f"{RUNTIME_REPOSITORY}:" + _digest(base_id, "\n".join(packages), str(cfg.uid),
                                             ca, *tools.values(), RECIPE_VERSION)
    with _tag_lock(tag):
        if image_exists(runtime, tag):
            return ImageResult(tag, cached=True, seconds=time.monotonic() - started)
        files = {"ca-bundle.crt": ca} if ca else {}
        files.update(tools)
        _build(runtime, cfg, tag=tag, dockerfile=runtime_dockerfile(cfg, packages, ca, tools),
               files=files, kind="runtime", log_path=log)
    log_result(tag, started)
    return ImageResult(tag, cached=False, seconds=time.monotonic() - started)


def log_result(tag: str, started: float) -> None:
    logger.info("built image %s in %.1f s", tag, time.monotonic() - started)


# The project image ---------------------------------------------------------------------

def project_image(runtime: DockerRuntime, cfg: RuntimeConfig, base_tag: str,
                  requirements: bytes | None, apt: bytes | None, log: Path) -> ImageResult:
    """The runtime image plus a branch's apt.txt and requirements.txt, if it has any."""
    if requirements is None and apt is None:
        return ImageResult(base_tag, cached=True, seconds=0.0)
    started = time.monotonic()
    packages = parse_apt(apt) if apt is not None else []
    tag = f"{PROJECT_REPOSITORY}:" + _digest(base_tag, requirements or b"", apt or b"",
                                             RECIPE_VERSION)
    with _tag_lock(tag):
        if image_exists(runtime, tag):
            return ImageResult(tag, cached=True, seconds=time.monotonic() - started)
        if not image_exists(runtime, base_tag):
            raise ImageBuildError(f"the runtime image {base_tag} is missing")
        files = {"requirements.txt": requirements} if requirements is not None else {}
        dockerfile = project_dockerfile(base_tag, packages, requirements is not None)
        _build(runtime, cfg, tag=tag, dockerfile=dockerfile, files=files, kind="project",
               log_path=log)
    log_result(tag, started)
    return ImageResult(tag, cached=False, seconds=time.monotonic() - started)


# `python -m appliance.runtime.images ensure-base`, run by scripts/setup-host.sh --------

def main(argv: list[str] | None = None) -> int:
    from appliance import config

    parser = argparse.ArgumentParser(prog="python -m appliance.runtime.images")
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("ensure-base", help="build the base image if it is missing")
    base.add_argument("--config", default=None, help="the appliance.toml to read")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = config.load(args.config)
        runtime = DockerRuntime(cfg.runtime, instance="host")
        result = ensure_base_image(runtime, cfg.runtime)
    except ApplianceError as exc:
        logger.error("base image: %s", exc)
        return 1
    state = "present" if result.cached else f"built in {result.seconds:.0f} s"
    logger.info("base image %s: %s", result.tag, state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
