"""The Debian run (`make test-debian`) really runs on Debian 12's packages: each library the
.deb depends on is imported from Debian's dist-packages, at Debian 12's version, on
Debian's Python. Skipped in the PyPI run."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("APPLIANCE_TEST_DEBIAN_STACK") != "1",
                                reason="only in the run on Debian's packages")

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages/"
# module: (distribution, Debian 12's version prefix)
DEBIAN_12 = {
    "flask": ("Flask", "2.2."), "werkzeug": ("Werkzeug", "2.2."),
    "waitress": ("waitress", "2.1."), "apscheduler": ("APScheduler", "3.9."),
    "psycopg": ("psycopg", "3.1."), "psycopg_pool": ("psycopg-pool", "3.1."),
    "docker": ("docker", "5.0."), "pygit2": ("pygit2", "1.11."),
    "aiosmtpd": ("aiosmtpd", "1.4."), "click": ("click", "8.1."),
}


def test_python_is_debians_own():
    assert sys.base_prefix == "/usr" and sys.version_info[:2] == (3, 11)


@pytest.mark.parametrize("module", sorted(DEBIAN_12))
def test_each_dependency_comes_from_debians_package_at_debian_12s_version(module):
    distribution, version = DEBIAN_12[module]
    assert importlib.import_module(module).__file__.startswith(DEBIAN_DIST_PACKAGES)
    assert importlib.metadata.version(distribution).startswith(version)
