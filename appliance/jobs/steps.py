"""Named steps of a pipeline: each is timed and recorded on the build, so the UI shows
progress and a slow step is visible."""

from __future__ import annotations

import contextlib
import logging
import time

from appliance.errors import ApplianceError
from appliance.store import builds as builds_store

log = logging.getLogger(__name__)


class BuildFailed(ApplianceError):
    """The build cannot go on; the message is the reason shown on its page."""


class StepRecorder:
    def __init__(self, db, build_id: int, names: list[str]):
        self.db = db
        self.build_id = build_id
        self.seconds: dict[str, float] = {}
        with db.transaction() as conn:
            builds_store.plan_steps(conn, build_id, names)

    @contextlib.contextmanager
    def step(self, name: str):
        with self.db.transaction() as conn:
            builds_store.step_started(conn, self.build_id, name)
        started = time.monotonic()
        details: dict[str, str] = {}
        try:
            yield details
        except BaseException as exc:
            self._finish(name, "failed", started, details.get("detail") or str(exc))
            raise
        self._finish(name, "done", started, details.get("detail", ""))

    def skip(self, name: str, detail: str = "") -> None:
        with self.db.transaction() as conn:
            builds_store.step_finished(conn, self.build_id, name, "skipped", 0.0, detail)

    def _finish(self, name: str, state: str, started: float, detail: str) -> None:
        seconds = time.monotonic() - started
        self.seconds[name] = seconds
        log.info("build %s: step %s %s in %.2f s", self.build_id, name, state, seconds)
        with self.db.transaction() as conn:
            builds_store.step_finished(conn, self.build_id, name, state, seconds, detail)


class NoSteps:
    """What a StepRecorder does outside a pipeline (a stopped build's server started
    again): the work is done, nothing is recorded."""

    @contextlib.contextmanager
    def step(self, name: str):
        yield {}

    def skip(self, name: str, detail: str = "") -> None:
        """Nothing to record."""


NO_STEPS = NoSteps()
