"""The JSON twins of one build and of a branch's history, the one build shape the API and
the CLI share, and events that carry their build. Flask's test client against a real
state database (the owner, member and outsider of tests/conftest.py); the CLI as a
subprocess on the same database, as a script would run it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from tests.host import ROOT
from tests.integration.harness import free_port, write_config

# The keys `appliance build list --json` had before the API and the CLI shared one shape:
# scripts read them, so they stay.
CLI_KEYS = {"id", "project", "branch", "commit", "stage", "state", "result", "reason", "url",
            "page", "failed_tests", "created_at", "started_at", "finished_at", "timings"}


def finished_build(db, make_build, branch="main", **overrides) -> dict:
    """A green running build with two steps (one timed) and a failing test named."""
    build = make_build(branch, state="running", result="success", host_port=18095,
                       trigger="rebuild", failed_tests=[{"module": "shop", "name": "test_total",
                                                         "message": "1 != 2"}], **overrides)
    with db.transaction() as conn:
        store_builds.plan_steps(conn, build["id"], ["checkout", "install"])
        store_builds.step_finished(conn, build["id"], "checkout", "done", 0.5)
    return build


def add_event(db, people, branch: str, kind: str, message: str, **fields) -> None:
    with db.transaction() as conn:
        row = store_projects.get_branch(conn, people["project"], branch)
        store_builds.add_event(conn, project_id=people["project"]["id"], branch_id=row["id"],
                               kind=kind, message=message, **fields)


def cli_build_list(config, tmp_path, state_dbname, *args) -> list[dict]:
    """`appliance build list --json` on the test's state database, as a script runs it."""
    folder = tmp_path / "cli"
    folder.mkdir(parents=True)
    port = free_port()
    path = write_config(folder, state_dbname, port)
    config.server.public_url = f"http://127.0.0.1:{port}"  # so both name the same pages
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(path),
                             "build", "list", *args, "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# One build

def test_one_build_as_json_is_the_element_of_the_builds_list(client_as, db, make_build, config):
    build = finished_build(db, make_build)
    client = client_as("member")
    one = client.get(f"/api/builds/{build['id']}").get_json()
    assert one == client.get("/api/projects/acme/builds").get_json()[0]
    assert one["id"] == build["id"] and (one["project"], one["branch"]) == ("acme", "main")
    assert (one["state"], one["result"], one["trigger"]) == ("running", "success", "rebuild")
    assert one["url"] == f"http://{config.runtime.public_host}:18095/"
    assert one["page"] == f"{config.server.public_url.rstrip('/')}/builds/{build['id']}"
    assert one["steps"] == [{"name": "checkout", "state": "done", "seconds": 0.5},
                            {"name": "install", "state": "pending", "seconds": None}]
    assert one["timings"] == {"checkout": 0.5}
    assert one["failed_tests"] == ["test_total"]
    assert one["message"] == "Add the shop" and one["author"] == "Ada <ada@example.com>"


def test_a_build_as_json_is_404_to_an_outsider_and_when_there_is_none(client_as, make_build):
    build = make_build()
    outsider = client_as("outsider")
    response = outsider.get(f"/api/builds/{build['id']}")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Nothing here, or nothing you may see."}
    assert client_as("owner").get("/api/builds/999999").get_json() == response.get_json()


def test_the_cli_lists_builds_in_the_apis_shape_with_the_keys_it_always_had(
        client_as, db, make_build, config, tmp_path, state_dbname):
    finished_build(db, make_build)
    make_build("feature")
    listed = cli_build_list(config, tmp_path, state_dbname, "acme")
    assert CLI_KEYS <= set(listed[0])
    assert listed == client_as("member").get("/api/projects/acme/builds").get_json()
    assert [b["branch"] for b in cli_build_list(config, tmp_path / "again", state_dbname,
                                                "acme", "--branch", "feature")] == ["feature"]


# A branch's history

def test_a_branchs_history_pages_newest_first_as_the_builds_list_does(client_as, db, people,
                                                                      make_build):
    make_build("feature/cart")
    make_build("main")
    for number in range(5):
        add_event(db, people, "feature/cart", "stage_changed", f"move {number}")
    add_event(db, people, "main", "stage_changed", "another branch's")
    client = client_as("member")
    seen, pages = [], []
    url = "/api/projects/acme/branches/feature/cart/history?limit=2"
    while url and len(pages) < 5:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(url)
        seen += [event["message"] for event in response.get_json()]
        link = response.headers.get("Link")
        url = link[1:link.index('>; rel="next"')] if link else None
    assert seen == [f"move {number}" for number in (4, 3, 2, 1, 0)]
    assert len(pages) == 3 and "before=" in pages[1] and "limit=2" in pages[1]
    everything = client.get("/api/projects/acme/branches/feature/cart/history").get_json()
    assert [e["message"] for e in everything] == seen
    assert "Link" not in client.get("/api/projects/acme/branches/feature/cart/history").headers


def test_a_history_event_carries_its_build_and_who_did_it(client_as, db, people, make_build,
                                                        config):
    build = make_build("main")
    add_event(db, people, "main", "rollback", "the update failed: rolled back",
              build_id=build["id"], user_id=people["owner"]["id"], data={"reason": "red"})
    add_event(db, people, "main", "gc", "build #999 dropped: a message naming a build")
    newest, oldest = client_as("member").get(
        "/api/projects/acme/branches/main/history").get_json()
    assert newest["build_id"] is None and newest["build_page"] is None
    assert newest["user"] is None and newest["kind"] == "gc"
    assert oldest["build_id"] == build["id"] and oldest["user"] == "owner"
    assert oldest["build_page"] == f"{config.server.public_url.rstrip('/')}/builds/{build['id']}"
    assert oldest["data"] == {"reason": "red"} and oldest["created_at"][:2] == "20"


def test_the_history_page_links_an_event_to_its_build_id_never_to_one_its_message_names(
        client_as, db, people, make_build):
    build = make_build("main")
    add_event(db, people, "main", "rollback", "the update failed: rolled back",
              build_id=build["id"])
    add_event(db, people, "main", "gc", "build #999 dropped: a message naming a build")
    page = client_as("member").get("/projects/acme/branches/main").get_data(as_text=True)
    assert (f'<a class="event-message" href="/builds/{build["id"]}" title="build #{build["id"]}">'
            "the update failed: rolled back</a>") in page
    assert '<span class="event-message">build #999 dropped' in page
    assert "/builds/999" not in page


def test_a_history_is_404_to_an_outsider_and_refuses_a_bad_page(client_as, people, make_build):
    make_build("main")
    path = "/api/projects/acme/branches/main/history"
    assert client_as("outsider").get(path).status_code == 404
    member = client_as("member")
    assert member.get("/api/projects/acme/branches/nope/history").status_code == 404
    for query in ("?before=x", "?before=0", "?limit=101", "?limit=-1"):
        response = member.get(path + query)
        assert response.status_code == 400, query
        assert "must be a whole number" in response.get_json()["error"]
