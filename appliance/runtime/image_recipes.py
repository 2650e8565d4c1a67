"""What the appliance's images are made of: Dockerfiles and package lists, as text.

Pure functions, no engine: runtime.images builds these recipes.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources

from appliance.config import RuntimeConfig
from appliance.errors import ConfigError, UserError
from appliance.runtime.docker import CA_BUNDLE_PATH, CA_ENV_NAMES

# A Debian package name with an optional "=version": nothing a shell would interpret.
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
USER_HOME = "/var/lib/odoo"
PYCACHE_DIR = "/var/cache/odoo-pycache"
# What a build's terminal (the Shell tab, SSH) offers, installed in every runtime image.
SHELL_PACKAGES = ["bash", "less", "lnav", "postgresql-client", "procps"]
SHELL_RC = "/etc/appliance/bashrc"
TOOLS_DIR = "/usr/local/lib/appliance"
# The terminal's commands: name in /usr/local/bin -> the tool (appliance/runtime/
# shell_tools/) it runs. The pg wrapper gives psql & co. the build's database.
SHELL_COMMANDS = {"psql": "appliance-pg-wrapper", "pg_dump": "appliance-pg-wrapper",
                  "pg_restore": "appliance-pg-wrapper", "odoo-update": "appliance-control",
                  "odoo-restart": "appliance-control"}
# Places in the home folder: logs, the source of the branch and of Odoo.
HOME_LINKS = {"logs": "/var/log/odoo", "src/user": "/mnt/src/user", "src/odoo": "/opt/odoo"}


def validate_packages(names: list[str], source: str) -> list[str]:
    for name in names:
        if not PACKAGE_RE.match(name):
            raise ConfigError(f"{source}: {name!r} is not a Debian package name")
    return names


def parse_apt(data: bytes) -> list[str]:
    """Package names from an apt.txt: one per line, '#' starts a comment."""
    packages = []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not PACKAGE_RE.match(line):
            raise UserError(f"apt.txt line {number}: {raw.strip()!r} is not a Debian "
                            "package name (one package per line, optionally =version)")
        packages.append(line)
    return packages



def _ca_lines(ca: bytes) -> str:
    if not ca:
        return ""
    env = " ".join(f"{name}={CA_BUNDLE_PATH}" for name in CA_ENV_NAMES)
    apt = f'Acquire::https::CaInfo "{CA_BUNDLE_PATH}";'
    return (f"COPY ca-bundle.crt {CA_BUNDLE_PATH}\n"
            f"ENV {env}\n"
            f"RUN echo {shlex.quote(apt)} > /etc/apt/apt.conf.d/90appliance-ca\n")


def _apt_install(packages: list[str]) -> str:
    names = " ".join(shlex.quote(name) for name in packages)
    return ("export DEBIAN_FRONTEND=noninteractive; apt-get update; "
            f"apt-get install -y --no-install-recommends {names}; "
            "rm -rf /var/lib/apt/lists/*")


def shell_tools() -> dict[str, bytes]:
    """The terminal's tools, as files of the image's build context."""
    folder = resources.files("appliance.runtime") / "shell_tools"
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir(),
                                                                key=lambda e: e.name)
            if entry.name.startswith("appliance-")}


def _shell_lines(tools: dict[str, bytes]) -> str:
    """The terminal's rc file, commands and home links (root-owned: the container's
    user cannot change them)."""
    links = [f"ln -sf {TOOLS_DIR}/{tool} /usr/local/bin/{name}"
             for name, tool in SHELL_COMMANDS.items()]
    home = [f"ln -s {target} {USER_HOME}/{name}" for name, target in HOME_LINKS.items()]
    names = " ".join(sorted(name for name in tools if name != "appliance-bashrc"))
    return (f"COPY {names} {TOOLS_DIR}/\n"
            f"COPY appliance-bashrc {SHELL_RC}\n"
            f"RUN set -eux; chmod 0755 {TOOLS_DIR}/*; chmod 0644 {SHELL_RC}; "
            + "; ".join(links) + "; "
            "printf '#!/bin/sh\\nexec python3 /opt/odoo/odoo-bin \"$@\"\\n' "
            "> /usr/local/bin/odoo-bin; chmod 0755 /usr/local/bin/odoo-bin; "
            f"mkdir -p {USER_HOME}/src; " + "; ".join(home) + "\n")


def runtime_dockerfile(cfg: RuntimeConfig, packages: list[str], ca: bytes,
                       tools: dict[str, bytes] | None = None) -> str:
    uid = int(cfg.uid)
    return (
        f"FROM {cfg.base_image}\n"
        + _ca_lines(ca)
        + f"RUN set -eux; {_apt_install(packages)}; "
        f"groupadd --gid {uid} odoo; "
        f"useradd --uid {uid} --gid {uid} --home-dir {USER_HOME} --create-home "
        f"--shell /bin/bash odoo; "
        f"install -d -o {uid} -g {uid} {PYCACHE_DIR}\n"
        + (_shell_lines(tools) if tools else "")
        + f"ENV PYTHONPYCACHEPREFIX={PYCACHE_DIR} PYTHONUNBUFFERED=1 LANG=C.UTF-8\n"
        "USER odoo\n"
        f"WORKDIR {USER_HOME}\n")



PIP_INSTALL = (
    "if ! python3 -m pip --version >/dev/null 2>&1; then "
    + _apt_install(["python3-pip"]) + "; fi; "
    "python3 -m pip install --break-system-packages --no-cache-dir "
    "--disable-pip-version-check --progress-bar off "
    "-r /tmp/appliance-requirements.txt; rm -f /tmp/appliance-requirements.txt")


def project_dockerfile(base_tag: str, packages: list[str], requirements: bool) -> str:
    lines = [f"FROM {base_tag}", "USER root"]
    if packages:
        lines.append(f"RUN set -eux; {_apt_install(packages)}")
    if requirements:
        lines.append("COPY requirements.txt /tmp/appliance-requirements.txt")
        lines.append(f"RUN set -eux; {PIP_INSTALL}")
    lines.append("USER odoo")
    return "\n".join(lines) + "\n"
