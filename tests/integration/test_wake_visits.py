"""A visit to a sleeping build, as the daemon answers it behind Caddy (/_proxy/wake):
held until the build runs and then sent to the same address again, or given the page
that reloads itself. The web app on a real state database; the task workers are played
by the test (tests/integration/test_proxy.py wakes real builds through a real Caddy)."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.jobs.proxy_config import ORIGINAL_URI
from appliance.store import builds as builds_store
from appliance.web import proxy as web_proxy


def visit(app, build_id: int, uri: str = "/web/login?next=%2Fodoo"):
    return app.test_client().get(f"/_proxy/wake/{build_id}", headers={ORIGINAL_URI: uri})


def start_tasks(db, build_id: int) -> list[dict]:
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM tasks WHERE build_id = %s AND kind = 'start_server'",
                            (build_id,)).fetchall()


def later(seconds: float, action) -> threading.Thread:
    """Run `action` in `seconds`, as a task worker would while a visit is held."""
    def run():
        time.sleep(seconds)
        action()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def asleep(make_build):
    return make_build("feature", state="stopped", asleep=True)


def test_a_held_visit_is_sent_to_the_same_address_once_its_build_runs(app, db, asleep):
    def woken():
        with db.transaction() as conn:
            builds_store.set_state(conn, asleep["id"], "starting")
        time.sleep(0.1)
        with db.transaction() as conn:
            builds_store.set_state(conn, asleep["id"], "running", host_port=18099,
                                   asleep=False)
    worker = later(0.3, woken)
    started = time.monotonic()
    response = visit(app, asleep["id"])
    worker.join()
    assert response.status_code == 307
    assert response.headers["Location"] == "/web/login?next=%2Fodoo"
    assert response.headers["Cache-Control"] == "no-store"
    assert 0.3 <= time.monotonic() - started < 5
    [task] = start_tasks(db, asleep["id"])  # the visit asked for the start, once
    assert task["state"] == "queued"


def test_a_visit_held_longer_than_the_build_takes_gets_the_page_that_reloads_itself(
        app, db, asleep, monkeypatch):
    monkeypatch.setattr(web_proxy, "HOLD_SECONDS", 0.3)
    response = visit(app, asleep["id"], "//elsewhere.example/")
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and "Waking up" in body
    assert response.headers["Retry-After"] == "1"
    assert 'content="1;url=/"' in body  # never to another site
    # A second visitor joins the start under way instead of asking for another.
    assert visit(app, asleep["id"]).status_code == 503
    assert len(start_tasks(db, asleep["id"])) == 1


def test_a_visit_whose_build_failed_to_start_gets_the_page_at_once(app, db, asleep):
    def failed():
        with db.transaction() as conn:
            [task] = start_tasks(db, asleep["id"])
            builds_store.finish_task(conn, task["id"], "the server did not answer")
    worker = later(0.2, failed)
    started = time.monotonic()
    response = visit(app, asleep["id"])
    worker.join()
    assert response.status_code == 503 and "Waking up" in response.get_data(as_text=True)
    assert time.monotonic() - started < 3  # not held for HOLD_SECONDS


def test_visits_beyond_those_that_may_be_held_get_the_page_at_once(app, asleep,
                                                                    monkeypatch):
    monkeypatch.setattr(web_proxy, "_held", threading.BoundedSemaphore(1))
    monkeypatch.setattr(web_proxy, "HOLD_SECONDS", 2)
    held = threading.Thread(target=visit, args=(app, asleep["id"]))
    held.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert visit(app, asleep["id"]).status_code == 503
    assert time.monotonic() - started < 1
    held.join()


def test_a_visit_to_an_unknown_build_is_a_404(app, db, people):
    assert visit(app, 99999).status_code == 404
