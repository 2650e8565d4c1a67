"""A build's state, and the one table of the moves between states.

A build is queued by a push, claimed by a worker, goes through its pipeline's steps and
ends with a server running or without one. Its `result` (green, yellow, red) is a
separate column: a running build can be red (failed tests, modules installed).

    queued -> preparing -> installing -> testing -> starting -> running
      (forward, skipping what a pipeline has not: production's fast deploy goes from
       preparing to starting, staging never tests)
    preparing, installing, testing, starting -> failed   the pipeline stopped, red
    preparing, installing, testing, starting -> queued   started over after a restart
    starting -> stopped      a stopped build's server did not come up again
    running -> stopped       its server was stopped (cap, user, deploy); database kept
    stopped -> starting      its server is started again
    running, stopped -> done a newer build took over its database or went live
    running, stopped, failed, done -> dropped   collected: only the row and logs stay

Anything else is refused (IllegalMove): a dropped build never runs again, a failed
build never gets a server, nothing goes back to preparing.
"""

from __future__ import annotations

import enum

from appliance.errors import ApplianceError


class BuildState(enum.StrEnum):
    """The values are what the builds table stores and templates compare."""

    QUEUED = "queued"          # waiting for a worker
    PREPARING = "preparing"    # claimed: checkout, image, database
    INSTALLING = "installing"  # modules installed or updated in a one-off container
    TESTING = "testing"        # the install's tests run
    STARTING = "starting"      # the server is starting and its health checked
    RUNNING = "running"        # the server answers
    STOPPED = "stopped"        # no server, the database kept: it can start again
    FAILED = "failed"          # ended without a server (red, with the reason)
    DONE = "done"              # superseded: a newer build has its database or is live
    DROPPED = "dropped"        # collected: database, files and containers gone


_S = BuildState
# A worker is on the build.
ACTIVE = (_S.PREPARING, _S.INSTALLING, _S.TESTING, _S.STARTING)
# The pipeline is over (with or without a server).
FINISHED = (_S.RUNNING, _S.STOPPED, _S.FAILED, _S.DONE, _S.DROPPED)
# Moves that set the build's finished_at.
ENDINGS = (_S.RUNNING, _S.FAILED, _S.DONE)
# The way through a pipeline: any move forward along it is allowed.
LADDER = (_S.QUEUED, _S.PREPARING, _S.INSTALLING, _S.TESTING, _S.STARTING, _S.RUNNING)


def _forward(state: BuildState) -> set[BuildState]:
    return set(LADDER[LADDER.index(state) + 1:]) if state in LADDER else set()


TRANSITIONS: dict[BuildState, frozenset[BuildState]] = {
    _S.QUEUED: frozenset(_forward(_S.QUEUED)),
    _S.PREPARING: frozenset(_forward(_S.PREPARING) | {_S.FAILED, _S.QUEUED}),
    _S.INSTALLING: frozenset(_forward(_S.INSTALLING) | {_S.FAILED, _S.QUEUED}),
    _S.TESTING: frozenset(_forward(_S.TESTING) | {_S.FAILED, _S.QUEUED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.FAILED, _S.QUEUED, _S.STOPPED}),
    _S.RUNNING: frozenset({_S.STOPPED, _S.DONE, _S.DROPPED}),
    _S.STOPPED: frozenset({_S.STARTING, _S.DONE, _S.DROPPED}),
    _S.FAILED: frozenset({_S.DROPPED}),
    _S.DONE: frozenset({_S.DROPPED}),
    _S.DROPPED: frozenset(),
}


class IllegalMove(ApplianceError):
    """A build was asked to go to a state it cannot reach from where it is."""


def parse(value: str) -> BuildState:
    """The state named `value`; an unknown name is refused with the known ones."""
    try:
        return BuildState(value)
    except ValueError:
        known = ", ".join(state.value for state in BuildState)
        raise IllegalMove(f"unknown build state {value!r} (known: {known})") from None


def check_move(build_id: int, old: str, new: str) -> BuildState:
    """The new state, if the table allows moving there from `old`; else IllegalMove."""
    old_state, new_state = parse(old), parse(new)
    if new_state not in TRANSITIONS[old_state]:
        allowed = ", ".join(sorted(TRANSITIONS[old_state])) or "nothing, it is final"
        raise IllegalMove(f"build #{build_id} cannot go from {old_state} to {new_state} "
                          f"(from {old_state}: {allowed})")
    return new_state
