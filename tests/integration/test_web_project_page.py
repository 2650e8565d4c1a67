"""The project page of a project with many branches and builds: its conditional poll, the
shared merge targets, the development branches shown, the builds API's pages, the indexes.

Flask's test client against a real state database; the owner, member, outsider and admin
users, project `acme`, `make_build` and `work` (a real bare repository for merges) are the
shared fixtures of the conftest.py files.
"""

from __future__ import annotations

import re
import urllib.parse

import psycopg
import pytest

from appliance.store import builds as store_builds
from appliance.store import overview
from appliance.store import projects as store_projects
from appliance.web import projects as web_projects
from tests.helpers_web import flashes, post

HTMX = {"HX-Request": "true"}


def poll(client, etag: str | None = None, path: str = "/projects/acme"):
    """The list's poll as htmx sends it, with the ETag of the list it shows."""
    return client.get(path, headers={**HTMX, **({"If-None-Match": etag} if etag else {})})


def poll_etag(page: str) -> str | None:
    """The ETag the polling list sends, read from its hx-headers; None if it does not poll."""
    found = re.search(r"""hx-headers='\{"If-None-Match": "\\"(\w+)\\""\}'""", page)
    return f'"{found.group(1)}"' if found else None


def next_page(response) -> str | None:
    """The URL of the next page the Link header names, if any."""
    found = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
    return found.group(1) if found else None


def set_state(db, build_id: int, state: str, **fields) -> None:
    with db.transaction() as conn:
        store_builds.set_state(conn, build_id, state, **fields)


# The poll

def test_an_unchanged_list_answers_204_and_any_change_answers_the_new_list(
        client_as, db, people, make_build):
    make_build("main", state="running", result="success")
    queued = make_build("feature")
    client = client_as("owner")
    first = poll(client)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and 'data-build="%d"' % queued["id"] in first.get_data(True)
    assert first.headers["Cache-Control"] == "no-cache"

    unchanged = poll(client, etag)
    assert unchanged.status_code == 204 and unchanged.get_data() == b""

    def changed_by(change) -> str:
        nonlocal etag
        change()
        response = poll(client, etag)
        assert response.status_code == 200, change
        assert response.headers["ETag"] != etag
        etag = response.headers["ETag"]
        assert poll(client, etag).status_code == 204
        return response.get_data(as_text=True)

    page = changed_by(lambda: set_state(db, queued["id"], "testing"))
    assert "testing" in page
    page = changed_by(lambda: set_state(db, queued["id"], "running", result="warning"))
    assert re.search(r'class="cell yellow[^"]*" data-build="%d"' % queued["id"], page)
    newer = None

    def push():
        nonlocal newer
        newer = make_build("feature", commit="b" * 40)
    page = changed_by(push)
    assert 'data-build="%d"' % newer["id"] in page
    page = changed_by(lambda: make_build("hotfix"))
    assert 'data-branch="hotfix"' in page

    def move():
        with db.transaction() as conn:
            branch = store_projects.get_branch(conn, people["project"], "hotfix")
            store_projects.set_stage(conn, branch, "staging")
    page = changed_by(move)
    assert 'data-branch="hotfix" data-stage="staging"' in page


def test_what_the_list_does_not_show_leaves_the_poll_unchanged(client_as, db, people, make_build):
    build = make_build("main", state="testing")
    client = client_as("owner")
    etag = poll(client).headers["ETag"]
    with db.transaction() as conn:
        store_builds.add_event(conn, project_id=people["project"]["id"], kind="rebuild",
                               message="noted", build_id=build["id"])
        store_builds.touch(conn, build["id"])
        other = store_projects.create_project(conn, "other", "18.0", "appl_")
        branch, _ = store_projects.ensure_branch(conn, other, "main")
        store_builds.enqueue(conn, project=other, branch=branch, commit="c" * 40)
    assert poll(client, etag).status_code == 204


def test_an_etag_of_another_session_gets_the_whole_list(client_as, make_build):
    """The list's forms carry the session's CSRF token: another sign-in, even of the same
    person, must not keep a list whose forms it would refuse."""
    make_build("main")
    etag = poll(client_as("owner")).headers["ETag"]
    for other in (client_as("owner"), client_as("member")):
        response = poll(other, etag)
        assert response.status_code == 200 and 'data-branch="main"' in response.get_data(True)


def test_a_plain_request_always_gets_the_whole_page(client_as, make_build):
    make_build("main")
    client = client_as("owner")
    etag = poll(client).headers["ETag"]
    response = client.get("/projects/acme", headers={"If-None-Match": etag})
    assert response.status_code == 200 and "<html" in response.get_data(as_text=True)
    assert "ETag" not in response.headers


def test_the_list_polls_often_while_a_build_is_in_progress_and_seldom_when_idle(client_as, db,
                                                                               make_build):
    build = make_build("main")
    make_build("feature", state="running", result="success")
    client = client_as("owner")
    page = client.get("/projects/acme").get_data(as_text=True)
    assert page.count('hx-trigger="every 2s"') == 1
    assert 'hx-get="/projects/acme"' in page and 'hx-swap="outerHTML"' in page
    assert poll_etag(page) == poll(client).headers["ETag"]

    for state in ("preparing", "installing", "testing", "starting"):
        set_state(db, build["id"], state)
        assert 'hx-trigger="every 2s"' in poll(client).get_data(as_text=True), state
    set_state(db, build["id"], "running", result="success")
    fragment = poll(client).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="branches"')
    assert 'hx-trigger="every 5s"' in fragment and "every 2s" not in fragment
    assert 'hx-trigger="every 5s"' in client.get("/projects/acme").get_data(as_text=True)


# What the list shows

def test_menus_share_one_list_of_merge_targets(client_as, make_build):
    names = ["main"] + [f"feature-{n}" for n in range(6)]
    for name in names:
        make_build(name)
    page = client_as("owner").get("/projects/acme").get_data(as_text=True)
    assert page.count("<datalist") == 1 and page.count("<option") == len(names)
    lists = re.findall(r'<input name="target" list="([\w-]+)"', page)
    assert lists == ["merge-targets"] * len(names)
    datalist = page[page.index('<datalist id="merge-targets">'):page.index("</datalist>")]
    assert sorted(re.findall(r'<option value="([^"]+)">', datalist)) == sorted(names)


def test_a_single_branch_offers_no_merge(client_as, make_build):
    make_build("main")
    page = client_as("owner").get("/projects/acme").get_data(as_text=True)
    assert "<datalist" not in page and 'name="target"' not in page
    assert re.findall(r'name="stage" value="(\w+)"', page) == ["staging", "development"]


def test_cells_and_branches_show_the_first_line_of_the_commit_message(client_as, db, make_build):
    body = "The long explanation nobody reads in a tooltip.\nSigned-off-by: Ada"
    build = make_build("main", commit="d" * 40, message=f"Fix the invoice\n\n{body}")
    for path in ("/projects/acme", "/projects/acme/branches/main"):
        page = client_as("owner").get(path).get_data(as_text=True)
        assert f'data-build="{build["id"]}"' in page
        assert 'title="ddddddd Fix the invoice"' in page, path
        assert "long explanation" not in page and "Signed-off-by" not in page, path
    long_subject = make_build("main", message="x" * 500)
    page = client_as("owner").get("/projects/acme").get_data(as_text=True)
    title = re.search(r'data-build="%d"[^>]*title="([^"]*)"' % long_subject["id"], page).group(1)
    assert title == "0123456 " + "x" * overview.SUBJECT_CHARS


def test_development_branches_past_the_shown_ones_are_behind_show_all(
        client_as, db, make_build, monkeypatch):
    monkeypatch.setattr(web_projects, "DEVELOPMENT_SHOWN", 2)
    make_build("main")
    make_build("staging-a")
    with db.transaction() as conn:
        project = store_projects.get_project(conn, "acme")
        store_projects.set_stage(conn, store_projects.get_branch(conn, project, "staging-a"),
                                 "staging")
    for name in ("old", "older", "recent", "newest"):  # built in that order
        make_build(name)
    make_build("older", commit="e" * 40)  # built again: now the most recent
    client = client_as("owner")

    page = client.get("/projects/acme").get_data(as_text=True)
    development = page[page.index('id="stage-development"'):]
    assert re.findall(r'data-branch="([^"]+)"', development) == ["older", "newest"]
    assert ">Show all 4 development branches</a>" in development
    assert 'href="/projects/acme?branches=all"' in development
    assert re.findall(r'data-branch="([^"]+)"', page[:page.index('id="stage-development"')]) == [
        "main", "staging-a"]
    datalist = page[page.index('<datalist id="merge-targets">'):page.index("</datalist>")]
    assert len(re.findall("<option", datalist)) == 6  # every branch can be a merge target

    everything = client.get("/projects/acme?branches=all").get_data(as_text=True)
    development = everything[everything.index('id="stage-development"'):]
    assert re.findall(r'data-branch="([^"]+)"', development) == [
        "older", "newest", "recent", "old"]
    assert "Show all" not in everything
    assert 'hx-get="/projects/acme?branches=all"' in everything  # the poll keeps showing all
    assert poll(client, path="/projects/acme?branches=all").headers["ETag"] != \
        poll(client).headers["ETag"]


def test_merge_into_a_branch_that_does_not_exist_is_refused_by_name(client_as, people, work):
    heads = {name: work.head(name) for name in ("main", "feature/cart")}
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/merge", target="mian")
    assert response.status_code == 303
    assert flashes(client.get(response.headers["Location"]).get_data(as_text=True)) == [
        "no branch 'mian' in project 'acme'"]
    assert {name: work.head(name) for name in heads} == heads


# The builds API's pages

def test_builds_api_pages_with_before_and_links_the_next_page(client_as, make_build):
    ids = [make_build("main" if n % 2 else "feature", commit=f"{n:040d}")["id"] for n in range(5)]
    client = client_as("member")
    seen, url = [], "/api/projects/acme/builds?limit=2"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        rows = response.get_json()
        seen.append([row["id"] for row in rows])
        url = next_page(response)
        assert len(seen) < 5
    assert seen == [ids[:-3:-1], ids[-3:-5:-1], [ids[0]]]
    assert client.get(f"/api/projects/acme/builds?before={ids[2]}").get_json()[0]["id"] == ids[1]
    main = client.get(f"/api/projects/acme/builds?branch=main&before={ids[4]}&limit=1")
    assert [row["id"] for row in main.get_json()] == [ids[3]]
    following = urllib.parse.urlsplit(next_page(main))
    assert following.path == "/api/projects/acme/builds"
    assert urllib.parse.parse_qs(following.query) == {
        "branch": ["main"], "before": [str(ids[3])], "limit": ["1"]}
    assert "Link" not in client.get("/api/projects/acme/builds").headers  # one page: 5 < 100


@pytest.mark.parametrize("query", ["before=x", "before=0", "before=-3", "before=1.5",
                                   "limit=0", "limit=101", "limit=", "before=" + "9" * 5000,
                                   "before=١٢"])
def test_builds_api_refuses_a_bad_page_with_a_clear_error(client_as, make_build, query):
    make_build("main")
    response = client_as("member").get(f"/api/projects/acme/builds?{query}")
    if query == "limit=":  # empty: the default
        assert response.status_code == 200
        return
    assert response.status_code == 400
    name = query.split("=")[0]
    assert response.get_json()["error"].startswith(f"{name} must be a whole number from 1 to ")


# Indexes

def test_the_in_progress_index_covers_exactly_the_states_the_page_polls_for(db):
    with db.transaction() as conn:
        definition = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                                  ("builds_in_progress",)).fetchone()["indexdef"]
        assert sorted(re.findall(r"'(\w+)'::text", definition)) == sorted(
            overview.IN_PROGRESS_STATES)
        names = {row["indexname"] for row in conn.execute("SELECT indexname FROM pg_indexes")}
        assert {"builds_project", "events_build", "tasks_build"} <= names
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row["QUERY PLAN"] for row in conn.execute(
            psycopg.sql.SQL("EXPLAIN ") + overview.VERSION_SQL, (1, 12, 1)))
        assert "builds_in_progress" in plan
