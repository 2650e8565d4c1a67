"""The push-to-green test on real Odoo, through exactly the path the stand-in takes.

Runs only when APPLIANCE_TEST_ODOO_SOURCE names a real Odoo source tree (16.0 or later):
the runtime image then carries the full list of Odoo's Debian dependencies.
APPLIANCE_TEST_ODOO_REQUIREMENTS may add a requirements.txt line for the pushed branch
(a tree that needs one more wheel).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from appliance import layout
from appliance.config import ODOO_DEBIAN_PACKAGES
from tests.integration.harness import Appliance, make_repo, push, send_from_odoo, wait_for_mail

SOURCE = os.environ.get("APPLIANCE_TEST_ODOO_SOURCE", "")
pytestmark = [
    pytest.mark.docker, pytest.mark.real_odoo,
    pytest.mark.skipif(not SOURCE, reason="APPLIANCE_TEST_ODOO_SOURCE names no real Odoo tree"),
]
# A cold image build with Odoo's dependencies plus installing base with demo data.
BUILD_TIMEOUT = 1800


def test_real_odoo_push_to_green_and_health(tmp_path):
    app = Appliance(tmp_path, "realodoo", odoo_source=Path(SOURCE),
                    packages=list(ODOO_DEBIAN_PACKAGES))
    try:
        app.start()
        token = app.make_user("admin")
        app.make_project("real")
        extra = os.environ.get("APPLIANCE_TEST_ODOO_REQUIREMENTS")
        repo = make_repo(tmp_path / "repo", "green",
                         {"requirements.txt": extra + "\n"} if extra else None)
        _, ids = push(repo, app.remote("real", "admin", token), "feature-real")
        build = app.wait_build(ids[0], timeout=BUILD_TIMEOUT)
        log = layout.log_path(app.config, build["id"], "install").read_text()
        assert (build["state"], build["result"]) == ("running", "success"), (
            build["reason"], log[-5000:])
        assert "odoo.tests.result: 0 failed, 0 error(s) of" in log
        with urllib.request.urlopen(layout.build_url(app.config, build) + "web/health") as r:
            assert json.loads(r.read()) == {"status": "pass"}
        # Real Odoo reads the build's odoo.conf: its shell sends to the catcher.
        send_from_odoo(app, build, "Sent by real Odoo")
        assert wait_for_mail(app, build["id"], "Sent by real Odoo")["build_id"] == build["id"]
    finally:
        app.close()
