"""SIGTERM to a real daemon: running builds finish first, within a grace period.

Each test times the daemon's exit against its build, as seen from outside: the process
and the build's row are polled together.
"""

from __future__ import annotations

import logging
import re
import signal
import time

import pytest

from appliance.store import builds as builds_store
from tests.integration.harness import Appliance, make_repo, push

pytestmark = pytest.mark.docker

log = logging.getLogger(__name__)

POLL = 0.05
FINAL = ("running", "failed", "stopped", "done")
# What the daemon logs when it gives up waiting and exits with builds still running.
FORCED = "the next start picks running builds up again"


def slow_addon(seconds: int) -> dict:
    """An addon whose install takes `seconds` more (its post-init hook sleeps); its
    server starts at once."""
    return {
        "slow/__manifest__.py": ("{'name': 'Slow', 'version': '18.0.1.0.0', "
                                 "'depends': ['base'], 'post_init_hook': 'slow', "
                                 "'license': 'LGPL-3'}\n"),
        "slow/__init__.py": f"import time\n\n\ndef slow(env):\n    time.sleep({seconds})\n",
    }


@pytest.fixture
def app(tmp_path, monkeypatch):
    def make(grace: float) -> Appliance:
        monkeypatch.setenv("APPLIANCE_WORKERS_STOP_GRACE_SECONDS", str(grace))
        made = Appliance(tmp_path, "drain")
        apps.append(made)  # closed at the end even when it fails to start
        made.start()
        made.token = made.make_user("admin")
        made.make_project("drain")
        return made
    apps: list[Appliance] = []
    yield make
    for made in apps:
        made.close()


def build_in_install(app, tmp_path, seconds: int) -> int:
    repo = make_repo(tmp_path / "repo", files=slow_addon(seconds))
    _, (build_id,) = push(repo, app.remote("drain", "admin", app.token), "slow")
    app.wait_build(build_id, timeout=300, states=("installing",) + FINAL)
    time.sleep(1)  # inside the post-init hook by now
    return build_id


def state_of(app, build_id: int) -> str:
    with app.db.transaction() as conn:
        return builds_store.get_build(conn, build_id)["state"]


def stopped_cleanly(app) -> bool:
    text = app.log_path.read_text()
    return FORCED not in text and re.search(r"appliance\.daemon: stopped$", text, re.M)


def sigterm_and_time(app, build_id: int | None, timeout: float = 90) -> dict:
    """Send SIGTERM, then watch: when the build ended and when the process exited
    (monotonic seconds after the signal, None if not seen)."""
    process = app.process
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    seen = {"build_done": None, "exited": None, "state": None}
    while time.monotonic() - start < timeout:
        now = time.monotonic() - start
        if build_id is not None and seen["build_done"] is None:
            state = state_of(app, build_id)
            if state in FINAL:
                seen["build_done"], seen["state"] = now, state
        if seen["exited"] is None and process.poll() is not None:
            seen["exited"] = now
        if seen["exited"] is not None and (build_id is None or seen["build_done"] is not None
                                           or now > seen["exited"] + 30):
            break
        time.sleep(POLL)
    app.process = None if seen["exited"] is not None else process
    log.info("SIGTERM timings: %s", seen)
    return seen


def test_a_sigterm_during_a_build_exits_soon_after_the_build_finishes(app, tmp_path):
    appliance = app(grace=60)
    build_id = build_in_install(appliance, tmp_path, seconds=6)
    seen = sigterm_and_time(appliance, build_id)
    assert seen["state"] == "running", seen
    assert seen["exited"] is not None, seen
    assert seen["build_done"] <= seen["exited"] <= seen["build_done"] + 2, seen
    assert stopped_cleanly(appliance), appliance.log_path.read_text()[-2000:]


def test_a_sigterm_during_a_build_longer_than_the_grace_exits_at_the_grace(app, tmp_path):
    appliance = app(grace=3)
    build_id = build_in_install(appliance, tmp_path, seconds=40)
    seen = sigterm_and_time(appliance, build_id, timeout=20)
    assert seen["exited"] is not None and 3 <= seen["exited"] <= 3 + 2, seen
    assert seen["build_done"] is None, seen
    assert "builds still running after 3 s: " + FORCED in appliance.log_path.read_text()


def test_a_sigterm_with_nothing_running_exits_at_once_and_cleanly(app):
    appliance = app(grace=60)
    time.sleep(1)
    seen = sigterm_and_time(appliance, None)
    assert seen["exited"] is not None and seen["exited"] <= 2, seen
    assert stopped_cleanly(appliance), appliance.log_path.read_text()[-2000:]


def test_a_second_sigterm_while_builds_drain_exits_at_once(app, tmp_path):
    appliance = app(grace=60)
    build_id = build_in_install(appliance, tmp_path, seconds=40)
    appliance.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    seen = sigterm_and_time(appliance, build_id, timeout=20)
    assert seen["exited"] is not None and seen["exited"] <= 2, seen
    assert seen["build_done"] is None, seen
    assert "signal 15 again: exiting now: " + FORCED in appliance.log_path.read_text()
