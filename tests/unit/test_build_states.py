"""A build's states and the one table of moves between them (store.states), and
store.builds.set_state, which refuses what the table does not allow."""

import re
from importlib import resources

import pytest

from appliance.errors import NotFound
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.store import states
from appliance.store.states import BuildState, IllegalMove, check_move

S = BuildState


def walk(*path: BuildState) -> None:
    for old, new in zip(path, path[1:]):
        assert check_move(1, old, new) is new


def refused(old: str, new: str) -> str:
    with pytest.raises(IllegalMove) as caught:
        check_move(7, old, new)
    return str(caught.value)


# ------------------------------------------------------------------- the table


def test_the_states_are_exactly_those_the_builds_table_accepts():
    schema = resources.files("appliance.store.migrations").joinpath("001_initial.sql")
    check = re.search(r"state\s+text NOT NULL DEFAULT 'queued'\s+CHECK \(state IN \(([^)]*)\)",
                      schema.read_text())
    assert {s.strip(" '\n") for s in check.group(1).split(",")} == {s.value for s in S}
    assert set(states.TRANSITIONS) == set(S)


def test_a_state_is_its_stored_string_in_comparisons_and_text():
    assert S.RUNNING == "running" and "testing" in (S.TESTING,)
    assert f"{S.STOPPED}" == "stopped" and str(S.DONE) == "done"
    assert states.parse("failed") is S.FAILED


def test_a_development_build_goes_through_every_step_and_is_collected():
    walk(S.QUEUED, S.PREPARING, S.INSTALLING, S.TESTING, S.STARTING, S.RUNNING, S.STOPPED,
         S.STARTING, S.RUNNING, S.DROPPED)


def test_a_fast_deploy_skips_install_and_tests_and_the_replaced_build_is_done():
    walk(S.QUEUED, S.PREPARING, S.STARTING, S.RUNNING)
    walk(S.RUNNING, S.STOPPED, S.DONE, S.DROPPED)


def test_an_interrupted_build_starts_over_or_fails_from_any_active_state():
    for active in states.ACTIVE:
        walk(S.QUEUED, active, S.QUEUED)
        walk(active, S.FAILED, S.DROPPED)


def test_a_stopped_build_whose_server_does_not_come_up_is_stopped_again():
    walk(S.STOPPED, S.STARTING, S.STOPPED)


def test_nothing_leaves_dropped():
    for state in S:
        assert "from dropped: nothing, it is final" in refused("dropped", state)


@pytest.mark.parametrize("old, new", [
    ("failed", "starting"), ("failed", "running"), ("failed", "stopped"),  # no server
    ("running", "installing"), ("starting", "preparing"),  # no going back
    ("done", "running"), ("stopped", "running"),  # a server starts through starting
    ("queued", "failed"), ("queued", "done"), ("running", "failed"),
])
def test_moves_outside_the_table_are_refused_naming_both_states(old, new):
    message = refused(old, new)
    assert f"build #7 cannot go from {old} to {new}" in message
    assert f"(from {old}: " in message


def test_an_unknown_state_is_refused_naming_the_known_ones():
    assert "unknown build state 'paused' (known: queued, preparing," in refused("queued", "paused")
    assert "unknown build state 'paused'" in refused("paused", "queued")


# ------------------------------------------------------------ in the store


@pytest.fixture
def build(db):
    with db.transaction() as conn:
        project = store_projects.create_project(conn, "acme", "18.0", "appl_test_")
        branch, _ = store_projects.ensure_branch(conn, project, "feature")
        return store_builds.enqueue(conn, project=project, branch=branch, commit="c" * 40)


def row(db, build_id: int) -> dict:
    with db.transaction() as conn:
        return store_builds.get_build(conn, build_id)


def test_set_state_moves_returns_the_old_state_and_stamps_the_end(db, build):
    with db.transaction() as conn:
        assert store_builds.set_state(conn, build["id"], S.PREPARING) is S.QUEUED
        assert store_builds.set_state(conn, build["id"], "starting") is S.PREPARING
    assert row(db, build["id"])["finished_at"] is None
    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], S.RUNNING, host_port=18001, result="success")
    after = row(db, build["id"])
    assert (after["state"], after["host_port"], after["result"]) == ("running", 18001, "success")
    assert after["finished_at"] is not None


def test_an_illegal_move_is_refused_clearly_and_changes_nothing(db, build):
    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], S.PREPARING)
        store_builds.set_state(conn, build["id"], S.FAILED, result="failure", reason="broken")
    with pytest.raises(IllegalMove, match=rf"build #{build['id']} cannot go from failed to "
                                          r"running \(from failed: dropped\)"):
        with db.transaction() as conn:
            store_builds.set_state(conn, build["id"], "running", host_port=18002,
                                   result="success")
    after = row(db, build["id"])
    assert (after["state"], after["host_port"], after["result"], after["reason"]) == \
        ("failed", None, "failure", "broken")


def test_a_state_is_never_set_as_a_plain_column(db, build):
    with pytest.raises(ValueError, match="through set_state"):
        with db.transaction() as conn:
            store_builds.update(conn, build["id"], state="running", host_port=18003)
    assert (row(db, build["id"])["state"], row(db, build["id"])["host_port"]) == ("queued", None)


def test_moving_a_build_that_does_not_exist_says_so(db):
    with pytest.raises(NotFound, match="no build #999"):
        with db.transaction() as conn:
            store_builds.set_state(conn, 999, S.PREPARING)
