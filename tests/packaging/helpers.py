"""Helpers of the packaging tests: the Debian package built from a commit, a Debian 12
image with its dependencies installed (cached by the dependency list), made from the
debootstrapped base image, and containers of it."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import uuid
from pathlib import Path

from tests.host import ROOT

CONTROL = ROOT / "packaging" / "deb" / "debian" / "control"
BASE_IMAGE = os.environ.get("APPLIANCE_TEST_BASE_IMAGE", "appliance/debian:bookworm")
MIRROR = "http://deb.debian.org/debian"
# Besides the package's dependencies: systemd-analyze and man for `systemd-analyze verify`.
TEST_TOOLS = ["systemd", "man-db"]
IMAGE_REPOSITORY = "appliance/deb-test"
CA_BUNDLE = os.environ.get("APPLIANCE_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


def source_commit() -> str:
    """The commit packages are built from: HEAD when the run starts (the tree others may
    be editing would not give the same package twice)."""
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def build_deb(out: Path, commit: str, version: str | None = None,
              overlay: Path | None = None) -> Path:
    """packaging/build-deb.sh on a commit; the path of the .deb."""
    command = ["bash", str(ROOT / "packaging" / "build-deb.sh"), str(out)]
    if version:
        command.append(version)
    env = {**os.environ, "DEB_SOURCE": commit}
    if overlay is not None:
        env["DEB_OVERLAY"] = str(overlay)
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def dependencies() -> list[str]:
    """The binary package's Depends, first of each alternative, without substitutions."""
    text = CONTROL.read_text()
    depends = re.search(r"^Package: odoo-appliance\n(?:.*\n)*?Depends:((?:.*\n)(?:[ \t].*\n)*)",
                        text, re.MULTILINE).group(1)
    names = []
    for item in depends.replace("\n", " ").split(","):
        item = item.strip()
        if not item or item.startswith("${"):
            continue
        names.append(item.split("|")[0].split("(")[0].strip())
    return sorted(set(names + ["python3"]))


def docker(*args: str, timeout: float = 600, check: bool = True,
           input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}... failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dependency_image() -> str:
    """Debian 12 with the package's dependencies installed and apt's lists kept; built
    once for each dependency list (and base image), then reused."""
    packages = dependencies() + TEST_TOOLS
    base_id = docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).stdout.strip()
    ca = Path(CA_BUNDLE).read_bytes() if Path(CA_BUNDLE).exists() else b""
    digest = hashlib.sha256("\n".join([base_id, *packages]).encode() + ca).hexdigest()[:16]
    tag = f"{IMAGE_REPOSITORY}:{digest}"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    ca_lines = ""
    if ca:
        ca_lines = ("COPY ca-bundle.crt /etc/ssl/certs/appliance-ca.crt\n"
                    "RUN echo 'Acquire::https::CaInfo \"/etc/ssl/certs/appliance-ca.crt\";' "
                    "> /etc/apt/apt.conf.d/90appliance-ca\n")
    dockerfile = (f"FROM {BASE_IMAGE}\n{ca_lines}"
                  f"RUN echo 'deb {MIRROR} bookworm main' > /etc/apt/sources.list; "
                  "echo 'deb " + MIRROR + " bookworm-updates main' >> /etc/apt/sources.list; "
                  "export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
                  "apt-get install -y -q --no-install-recommends " + " ".join(packages) + "\n")
    context = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True,
                                  check=True).stdout.strip())
    try:
        (context / "Dockerfile").write_text(dockerfile)
        if ca:
            (context / "ca-bundle.crt").write_bytes(ca)
        docker("build", "--quiet", "--tag", tag, str(context), timeout=1800)
    finally:
        subprocess.run(["rm", "-rf", str(context)], check=True)
    return tag


class Container:
    """A Debian 12 container with the package's dependencies, the .deb mounted in it."""

    def __init__(self, image: str, deb, options: list[str] = ()):
        self.name = f"appliance-deb-test-{uuid.uuid4().hex[:8]}"
        self.deb = f"/debs/{deb.name}"
        docker("run", "--detach", "--name", self.name, "--volume", f"{deb.parent}:/debs:ro",
               *options, image, "sleep", "infinity")

    def run(self, script: str, check: bool = True, user: str = "root") -> str:
        result = docker("exec", "--user", user, "--env", "DEBIAN_FRONTEND=noninteractive",
                        self.name, "bash", "-c", script, check=False, timeout=600)
        output = result.stdout + result.stderr
        if check:
            assert result.returncode == 0, f"{script}\n-> {result.returncode}:\n{output}"
        self.returncode = result.returncode
        return output

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False)
