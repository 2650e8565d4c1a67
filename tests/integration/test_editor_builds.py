"""The Editor with a real daemon (the stand-in Odoo in Docker, its workers, its push
path): a developer edits a model of a running development build, saves, restarts its
server, updates the module on the build's database, then commits and pushes, and a new
build of that commit, authored by them, comes up running with the edit."""

from __future__ import annotations

import time

import pygit2
import pytest

from appliance.jobs import containers
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.web.app import create_app
from tests.helpers_web import csrf, flashes, login
from tests.integration.harness import Appliance, make_repo, push, sql

pytestmark = pytest.mark.docker

MODEL = "demo_ok/models/demo_ok_thing.py"
PASSWORD = "editor-tests-9d2f"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("appliance"), "editor")
    try:
        app.start()
        app.token = app.make_user("admin")
        project = app.make_project("acme")
        with app.db.transaction() as conn:
            ada = store_users.create_user(conn, "ada", PASSWORD)
            store_users.add_member(conn, project["id"], ada["id"], "developer")
        yield app
    finally:
        app.close()


@pytest.fixture
def client(appliance):
    web = create_app(appliance.config, appliance.db)
    web.config["TESTING"] = True
    client = web.test_client()
    assert login(client, "ada", PASSWORD).status_code == 302
    return client


def send(client, url: str, **data):
    return client.post(url, data={"csrf_token": csrf(client), **data})


def wait_task(app, build_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.db.transaction() as conn:
            task = conn.execute("SELECT * FROM tasks WHERE build_id = %s ORDER BY id DESC LIMIT 1",
                                (build_id,)).fetchone()
        if task["state"] in ("done", "failed"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task} did not end; daemon log:\n"
                         f"{app.log_path.read_text()[-3000:]}")


def server_id(app, build_id: int) -> str:
    (found,) = app.svc.docker.find(build_id=build_id, role="server")
    return found.id


def test_edit_restart_update_then_commit_and_push_builds_the_users_commit(
        appliance, client, tmp_path):
    repo = make_repo(tmp_path / "work", "green")
    _, (first_id,) = push(repo, appliance.remote("acme", "admin", appliance.token), "feature-edit")
    first = appliance.wait_build(first_id)
    assert first["state"] == "running", first["reason"]
    page = f"/builds/{first_id}/editor"

    opened = client.get(page, query_string={"path": MODEL}).get_data(as_text=True)
    assert "class DemoOkThing" in opened
    digest = opened.split('name="digest" value="', 1)[1].split('"', 1)[0]
    source = (repo / MODEL).read_text()
    edited = source.replace("    note = fields.Text()\n",
                            "    note = fields.Text()\n    colour = fields.Char()\n")
    assert edited != source
    response = send(client, f"{page}/save", path=MODEL, content=edited, digest=digest)
    assert response.status_code == 303, response.get_data(as_text=True)[-2000:]

    before = server_id(appliance, first_id)
    assert send(client, f"{page}/restart", path=MODEL).status_code == 303
    assert wait_task(appliance, first_id)["error"] == ""
    assert appliance.wait_build(first_id)["state"] == "running"
    assert server_id(appliance, first_id) != before

    assert send(client, f"{page}/update", path=MODEL).status_code == 303
    task = wait_task(appliance, first_id)
    assert (task["kind"], task["module"], task["error"]) == ("update_module", "demo_ok", "")
    assert appliance.wait_build(first_id)["state"] == "running"
    columns = sql(first["database"], "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'demo_ok_thing'")
    assert ("colour",) in [tuple(row) for row in columns]

    response = send(client, f"{page}/commit", path=MODEL, message="Things get a colour")
    notice = " ".join(flashes(client.get(response.headers["Location"]).get_data(as_text=True)))
    assert "Committed" in notice and "queued" in notice, notice
    bare = pygit2.Repository(str(appliance.config.paths.repos / "acme.git"))
    head = bare.references["refs/heads/feature-edit"].target
    commit = bare[head]
    assert (commit.author.name, commit.author.email) == ("ada", "ada@127.0.0.1")
    assert [str(p) for p in commit.parent_ids] == [first["commit"]]
    with appliance.db.transaction() as conn:
        branch = store_projects.get_branch(conn, {"id": first["project_id"], "name": "acme"},
                                           "feature-edit")
        second_id = conn.execute("SELECT max(id) AS id FROM builds WHERE branch_id = %s",
                                 (branch["id"],)).fetchone()["id"]
    second = appliance.wait_build(second_id)
    assert (second["commit"], second["author"]) == (str(head), "ada")
    assert second["state"] == "running", second["reason"]
    src = containers.build_paths(appliance.config, second_id).src
    assert (src / MODEL).read_text() == edited
