"""Moving, merging and rebuilding branches from the web UI, and a branch's page.

A real bare repository (no hooks) receives commits pushed with the git CLI; branch rows
are created as a push would (the `work` fixture). Permissions: owner, member, outsider.
"""

from __future__ import annotations

import re

from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from tests.helpers_web import csrf, flashes, post


def stage_of(db, project: dict, name: str) -> str:
    with db.transaction() as conn:
        return store_projects.get_branch(conn, project, name)["stage"]


def builds_of(db, project: dict, name: str) -> list[dict]:
    with db.transaction() as conn:
        return store_builds.builds_of_branch(
            conn, store_projects.get_branch(conn, project, name)["id"])


def section(page: str, stage: str) -> str:
    start = page.index(f'id="stage-{stage}"')
    end = page.find('<section class="stage', start + 1)
    return page[start:end if end != -1 else len(page)]


# Moves

def test_moves_by_form_refuse_a_second_production_and_land_in_the_history(
        client_as, db, people, work):
    project = people["project"]
    work.commit("Fix it", {"shop/fix.py": "x = 1\n"}, branch="hotfix", start="main")
    client = client_as("owner")

    response = post(client, "/projects/acme/branches/feature/cart/stage", stage="staging")
    assert response.status_code == 303 and response.headers["Location"] == "/projects/acme"
    page = client.get("/projects/acme").get_data(as_text=True)
    assert flashes(page) == ["Moved feature/cart to staging."]
    assert 'data-branch="feature/cart"' in section(page, "staging")

    response = post(client, "/projects/acme/branches/hotfix/stage", stage="production")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [refusal] = flashes(page)
    assert "acme already has a production branch (main)" in refusal
    assert 'class="flash error" role="alert"' in page
    assert stage_of(db, project, "hotfix") == "development"

    post(client, "/projects/acme/branches/main/stage", stage="development")
    assert stage_of(db, project, "main") == "development"
    post(client, "/projects/acme/branches/feature/cart/stage", stage="development")

    history = client.get("/projects/acme/branches/feature/cart").get_data(as_text=True)
    moves = re.findall(r"moved from (\w+) to (\w+)", history)
    assert moves == [("staging", "development"), ("development", "staging")]  # newest first
    assert history.count("owner ·") >= 2
    main = client.get("/projects/acme/branches/main").get_data(as_text=True)
    assert "moved from production to development" in main
    assert "moved from" not in client.get("/projects/acme/branches/hotfix").get_data(as_text=True)
    with db.transaction() as conn:
        # Back from staging: its pushes do nothing until someone says otherwise.
        assert store_projects.get_branch(conn, project, "feature/cart")["push_behaviour"] == "nothing"


def test_moving_to_the_stage_it_is_in_changes_nothing(client_as, db, people, work):
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/main/stage", stage="production")
    assert flashes(client.get(response.headers["Location"]).get_data(as_text=True)) == [
        "main is already in production."]
    assert "Stage changed" not in client.get("/projects/acme/branches/main").get_data(as_text=True)


def test_an_unknown_stage_is_refused(client_as, db, people, work):
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/stage", stage="qa")
    [message] = flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "unknown stage 'qa'" in message
    assert stage_of(db, people["project"], "feature/cart") == "development"


def test_a_branch_named_like_an_action_keeps_its_page(client_as, db, people, work):
    work.commit("Stage it", {"stage.txt": "s\n"}, branch="fix/stage", start="main")
    client = client_as("owner")
    page = client.get("/projects/acme/branches/fix/stage").get_data(as_text=True)
    assert "<h1>fix/stage</h1>" in page
    post(client, "/projects/acme/branches/fix/stage/stage", stage="staging")
    assert stage_of(db, people["project"], "fix/stage") == "staging"


def test_a_developer_moves_development_branches_to_staging_but_not_production_s(
        client_as, db, people, work):
    project = people["project"]
    client = client_as("member")
    assert post(client, "/projects/acme/branches/feature/cart/stage",
                stage="staging").status_code == 303
    assert stage_of(db, project, "feature/cart") == "staging"
    for branch, stage in (("main", "development"), ("feature/cart", "production")):
        response = post(client, f"/projects/acme/branches/{branch}/stage", stage=stage)
        assert response.status_code == 403, (branch, stage)
        assert "does not allow this on production" in response.get_data(as_text=True)
    assert stage_of(db, project, "main") == "production"
    assert stage_of(db, project, "feature/cart") == "staging"


def test_a_developer_cannot_merge_into_production_and_nothing_happens(client_as, db, people,
                                                                      work):
    before = work.head("main")
    response = post(client_as("member"), "/projects/acme/branches/feature/cart/merge",
                    target="main")
    assert response.status_code == 403
    assert work.head("main") == before
    assert builds_of(db, people["project"], "main") == []


# Merges

def test_merge_fast_forwards_the_target_and_queues_its_build(client_as, db, people, work):
    feature_head = work.head("feature/cart")
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/merge", target="main")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [build] = builds_of(db, people["project"], "main")
    assert flashes(page) == [f"Merged feature/cart into main (fast-forward): build #{build['id']} "
                             "queued."]
    assert work.head("main") == feature_head
    assert build["commit"] == feature_head and build["trigger"] == "merge"
    assert build["state"] == "queued" and build["commit_message"] == "Add the cart"
    assert f'data-build="{build["id"]}"' in section(page, "production")
    history = client.get("/projects/acme/branches/main").get_data(as_text=True)
    assert "merged feature/cart into main (fast-forward)" in history


def test_a_conflicting_merge_is_refused_names_the_file_and_moves_no_ref(
        client_as, db, people, work):
    work.commit("Cheaper", {"shop/models.py": "price = 2\n"}, branch="main")
    work.commit("Dearer", {"shop/models.py": "price = 3\n"}, branch="feature/cart")
    heads = {name: work.head(name) for name in ("main", "feature/cart")}
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/merge", target="main")
    [message] = flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "conflicts in shop/models.py" in message and "nothing was changed" in message
    assert {name: work.head(name) for name in heads} == heads
    assert builds_of(db, people["project"], "main") == []
    assert "Merge" not in client.get("/projects/acme/branches/main").get_data(as_text=True)


def test_merge_needs_a_target(client_as, work):
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/merge", target="")
    assert flashes(client.get(response.headers["Location"]).get_data(as_text=True)) == [
        "choose the branch to merge into"]


# Rebuilds

def test_rebuild_queues_a_build_and_is_refused_while_one_is_queued(client_as, db, people, work):
    client = client_as("member")
    page = client.get("/projects/acme/branches/feature/cart").get_data(as_text=True)
    assert re.search(r"<button type=\"submit\">Rebuild</button>", page)
    assert "Refresh from production" not in page  # development

    response = post(client, "/projects/acme/branches/feature/cart/rebuild")
    assert response.headers["Location"] == "/projects/acme/branches/feature/cart"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [build] = builds_of(db, people["project"], "feature/cart")
    assert flashes(page) == [f"Rebuild: build #{build['id']} queued."]
    assert build["trigger"] == "rebuild" and build["commit"] == work.head("feature/cart")
    assert "<button type=\"submit\" disabled>Rebuild</button>" in page
    assert 'hx-trigger="every 2s"' in page and f'data-build="{build["id"]}"' in page
    # The history's event links to its build.
    assert (f'<a class="event-message" href="/builds/{build["id"]}" title="build #{build["id"]}">'
            f'rebuild: build #{build["id"]} queued</a>') in page

    response = post(client, "/projects/acme/branches/feature/cart/rebuild")
    [refusal] = flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "feature/cart is building" in refusal
    assert len(builds_of(db, people["project"], "feature/cart")) == 1

    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], "running", result="success")
    fragment = client.get("/projects/acme/branches/feature/cart",
                          headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="branch-status"')
    assert "hx-trigger" not in fragment and "disabled" not in fragment


def test_refresh_from_production_is_for_staging_branches(client_as, db, people, work):
    client = client_as("owner")
    response = post(client, "/projects/acme/branches/feature/cart/refresh")
    [refusal] = flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "only a staging branch can be refreshed" in refusal
    post(client, "/projects/acme/branches/feature/cart/stage", stage="staging")
    assert "Refresh from production" in client.get(
        "/projects/acme/branches/feature/cart").get_data(as_text=True)
    post(client, "/projects/acme/branches/feature/cart/refresh")
    [build] = builds_of(db, people["project"], "feature/cart")
    assert build["trigger"] == "refresh" and build["stage"] == "staging"


# Settings

def test_push_behaviour_is_set_on_the_settings_tab(client_as, db, people, work):
    project = people["project"]
    client = client_as("owner")
    post(client, "/projects/acme/branches/feature/cart/stage", stage="staging")
    page = client.get("/projects/acme/branches/feature/cart?tab=settings").get_data(as_text=True)
    assert '<option value="new" selected>' in page and 'value="update"' in page
    response = post(client, "/projects/acme/branches/feature/cart/settings",
                    push_behaviour="update")
    assert response.headers["Location"] == "/projects/acme/branches/feature/cart?tab=settings"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert flashes(page) == ["Push behaviour of feature/cart: Update the previous build."]
    assert '<option value="update" selected>' in page
    with db.transaction() as conn:
        assert store_projects.get_branch(conn, project, "feature/cart")["push_behaviour"] == "update"

    response = post(client, "/projects/acme/branches/feature/cart/settings",
                    push_behaviour="sometimes")
    assert response.headers["Location"] == "/projects/acme/branches/feature/cart?tab=settings"
    assert flashes(client.get(response.headers["Location"]).get_data(as_text=True)) == [
        "push behaviour must be one of new, update, nothing"]

    # Only staging chooses: production always deploys, development always builds.
    for name, says in (("main", "always deploys"), ("hotfix", "makes a new build")):
        if name == "hotfix":
            work.commit("Fix it", {"shop/fix.py": "x = 1\n"}, branch="hotfix", start="main")
        response = post(client, f"/projects/acme/branches/{name}/settings",
                        push_behaviour="nothing")
        assert response.status_code == 303
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        [refusal] = flashes(page)
        assert "only a staging branch has a push behaviour" in refusal
        assert says in page and "<select" not in page
        with db.transaction() as conn:
            assert store_projects.get_branch(conn, project, name)["push_behaviour"] == "new"
    assert client.get("/projects/acme/branches/main?tab=shell").status_code == 404


# History, build page, JSON twin

def test_history_shows_commits_and_platform_events_newest_first(
        client_as, db, people, work, make_build):
    project = people["project"]
    build = make_build("main")
    with db.transaction() as conn:
        branch = store_projects.get_branch(conn, project, "main")
        store_builds.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                               kind="commit", message="Add the shop <b>",
                               user_id=people["owner"]["id"],
                               data={"sha": "abcdef1234567890" * 2 + "abcdef12",
                                     "author": "Ada", "email": "ada@example.com",
                                     "date": "2024-05-01T10:00:00+00:00",
                                     "message": "Add the shop <b>"})
        store_builds.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                               build_id=build["id"], kind="update_plan",
                               message="full deploy: update shop 1.0 -> 1.1")
        store_builds.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                               build_id=build["id"], kind="rollback",
                               message="the update failed: rolled back")
    page = client_as("member").get("/projects/acme/branches/main").get_data(as_text=True)
    kinds = re.findall(r'<li class="event event-(\w+)">', page)
    assert kinds == ["rollback", "update_plan", "commit"]
    assert "Rollback" in page and "Update plan" in page
    commit = page[page.index("event-commit"):]
    assert "<code class=\"sha\"" in commit and ">abcdef1<" in commit
    assert "Add the shop &lt;b&gt;" in commit and "Ada" in commit
    assert "2024-05-01 10:00:00 UTC" in commit and "owner ·" in commit
    assert page.count(f'<a class="event-message" href="/builds/{build["id"]}"') == 2
    assert "appliance ·" in page  # events without a person
    assert page.index('id="branch-status"') < page.index('class="card history"')


def test_build_page_shows_trigger_deploy_and_plan(client_as, make_build):
    build = make_build("main", trigger="merge", deploy="full", plan={
        "deploy": "full", "update": {"shop": ["18.0.1.0", "18.0.1.1"]}, "install": ["cart"],
        "summary": "update shop 18.0.1.0 -> 18.0.1.1; install cart (new)",
        "reasons": ["shop went up"]})
    page = client_as("owner").get(f"/builds/{build['id']}").get_data(as_text=True)
    assert '<dd class="trigger">merge</dd>' in page
    assert "full: maintenance, snapshot, then update the modules" in page
    assert "update shop 18.0.1.0 -&gt; 18.0.1.1; install cart (new)" in page
    assert re.search(r"<td><code>shop</code></td><td>18.0.1.0</td><td>18.0.1.1</td>", page)
    assert "<code>cart</code>" in page and "<li>shop went up</li>" in page
    assert 'href="/projects/acme/branches/main"' in page

    plain = make_build("main")
    page = client_as("owner").get(f"/builds/{plain['id']}").get_data(as_text=True)
    assert '<dd class="trigger">push</dd>' in page
    assert "Update plan" not in page and "<dt>Deploy</dt>" not in page


def test_project_page_links_branches_and_offers_moves_and_merges(client_as, work):
    page = client_as("owner").get("/projects/acme").get_data(as_text=True)
    assert '<script src="/static/stages.js" defer></script>' in page
    feature = page[page.index('data-branch="feature/cart"'):]
    assert 'draggable="true"' in feature[:400]
    assert 'href="/projects/acme/branches/feature/cart"' in feature
    assert 'data-move="/projects/acme/branches/feature/cart/stage"' in feature
    assert 'data-merge="/projects/acme/branches/feature/cart/merge"' in feature
    menu = feature[feature.index("<details"):feature.index("</details>")]
    assert re.findall(r'name="stage" value="(\w+)"', menu) == ["production", "staging"]
    # Merge targets: one list for every menu, not one per branch (a hundred branches).
    assert 'list="merge-targets"' in menu and "<option" not in menu
    targets = page[page.index('<datalist id="merge-targets">'):page.index("</datalist>")]
    assert re.findall(r'<option value="([^"]+)">', targets) == ["main", "feature/cart"]
    assert re.findall(r'<h2 data-drop-stage="(\w+)"', page) == [
        "production", "staging", "development"]
    for path in ("/projects/acme", "/projects/acme/branches/main",
                 "/projects/acme/branches/main?tab=settings"):
        page = client_as("owner").get(path).get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag, (path, tag)


def test_api_lists_branches_with_stage_behaviour_and_latest_build(
        client_as, db, people, work, make_build, config):
    make_build("main", state="failed", result="failure")
    latest = make_build("main", state="running", result="success", trigger="rebuild")
    rows = client_as("member").get("/api/projects/acme/branches").get_json()
    assert rows == [
        {"name": "main", "stage": "production", "push_behaviour": "new",
         "page": f"{config.server.public_url.rstrip('/')}/projects/acme/branches/main",
         "latest_build": {"id": latest["id"], "state": "running", "result": "success",
                          "trigger": "rebuild"}},
        {"name": "feature/cart", "stage": "development", "push_behaviour": "new",
         "page": f"{config.server.public_url.rstrip('/')}/projects/acme/branches/feature/cart",
         "latest_build": None},
    ]


# Permissions and CSRF

ACTIONS = [("stage", {"stage": "staging"}), ("merge", {"target": "main"}), ("rebuild", {}),
           ("refresh", {}), ("settings", {"push_behaviour": "nothing"})]


def assert_nothing_changed(db, people, work, heads):
    project = people["project"]
    assert stage_of(db, project, "feature/cart") == "development"
    assert {name: work.head(name) for name in heads} == heads
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM events").fetchone()["n"] == 0
        assert store_projects.get_branch(conn, project, "feature/cart")["push_behaviour"] == "new"


def test_outsider_gets_404_on_branch_pages_and_actions(client_as, db, people, work):
    heads = {name: work.head(name) for name in ("main", "feature/cart")}
    client = client_as("outsider")
    for path in ("/projects/acme/branches/feature/cart", "/projects/acme/branches/main?tab=settings",
                 "/api/projects/acme/branches"):
        assert client.get(path).status_code == 404, path
    for action, data in ACTIONS:
        response = post(client, f"/projects/acme/branches/feature/cart/{action}", **data)
        assert response.status_code == 404, action
    # An unknown branch looks the same to a member.
    member = client_as("member")
    assert member.get("/projects/acme/branches/nope").status_code == 404
    assert post(member, "/projects/acme/branches/nope/rebuild").status_code == 404
    assert_nothing_changed(db, people, work, heads)


def test_branch_actions_need_the_csrf_token(client_as, db, people, work):
    heads = {name: work.head(name) for name in ("main", "feature/cart")}
    client = client_as("owner")
    for action, data in ACTIONS:
        response = client.post(f"/projects/acme/branches/feature/cart/{action}", data=data)
        assert response.status_code == 400, action
        assert "CSRF token missing or wrong" in response.get_data(as_text=True)
    assert_nothing_changed(db, people, work, heads)
    # htmx sends it as a header.
    response = client.post("/projects/acme/branches/feature/cart/rebuild",
                           headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 303
