"""Fixtures of the packaging tests: the tools, the commit packages are built from, the
package built once per run, the Debian 12 image with its dependencies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.host import ROOT
from tests.packaging.helpers import build_deb, dependency_image, source_commit


@pytest.fixture(scope="session")
def packaging_tools():
    """debhelper, lintian, apt-ftparchive, gpg, systemd-analyze: installed when missing."""
    result = subprocess.run(["bash", str(ROOT / "packaging" / "build-deb.sh"), "--tools"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def commit() -> str:
    return source_commit()


@pytest.fixture(scope="session")
def deb(tmp_path_factory, commit, packaging_tools) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"), commit)


@pytest.fixture(scope="session")
def deb_image() -> str:
    return dependency_image()
