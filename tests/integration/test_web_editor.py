"""The Editor tab through Flask's test client: a real bare repository (the `work`
fixture: `main` in production, `feature/cart` in development), a real checkout of a
build's commit, real files. Who may (owner, member, outsider), saving, the refusals
(production, big and binary files, a file changed meanwhile), the tasks it queues, and
commit and push: a commit by the signed-in user on the branch and the build that
follows it, refused when the branch changed the same file since.
"""

from __future__ import annotations

import os
import stat

import pygit2
import pytest

from appliance.runtime import git
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from tests.helpers_web import csrf, flashes

CART = "shop/cart.py"


@pytest.fixture
def checkout(config, work, make_build):
    """A finished build of a branch whose source tree is its commit, checked out."""
    def make(branch: str = "feature/cart", files: dict | None = None, **overrides) -> dict:
        if files:
            work.commit(f"Files for {branch}", files, branch=branch)
        build = make_build(branch, commit=work.head(branch), state="running",
                           addons_dirs=".", **overrides)
        git.export_tree(work.bare, build["commit"], src(config, build))
        return build
    return make


def src(config, build: dict):
    return config.paths.builds / str(build["id"]) / "src"


def editor(build: dict) -> str:
    return f"/builds/{build['id']}/editor"


def open_file(client, build: dict, path: str):
    page = client.get(editor(build), query_string={"path": path})
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    return page.get_data(as_text=True)


def digest_in(page: str) -> str:
    return page.split('name="digest" value="', 1)[1].split('"', 1)[0]


def save(client, build: dict, path: str, content: str, digest: str | None = None):
    if digest is None:
        digest = digest_in(open_file(client, build, path))
    return post(client, f"{editor(build)}/save", path=path, content=content, digest=digest)


def post(client, url: str, **data):
    """A form posted with its CSRF token (the editor's forms have a `path` field)."""
    return client.post(url, data={"csrf_token": csrf(client), **data})


def builds_of(db, people, branch: str) -> list[dict]:
    with db.transaction() as conn:
        row = store_projects.get_branch(conn, people["project"], branch)
        return store_builds.builds_of_branch(conn, row["id"])


def test_a_developer_sees_the_tree_and_opens_a_file_of_a_development_build(
        client_as, checkout):
    build = checkout(files={"shop/__manifest__.py": "{'name': 'Shop'}\n"})
    client = client_as("member")
    page = client.get(editor(build)).get_data(as_text=True)
    assert ">shop/</a>" in page and "Pick a file" in page
    page = open_file(client, build, CART)
    assert "items = []" in page and ">cart.py</a>" in page and ">models.py</a>" in page
    assert 'aria-current="page">Editor</a>' in page
    assert "codemirror/codemirror.js" in page and "editor.js" in page
    assert "Read-only" not in page and ">Save</button>" in page


def test_saving_replaces_the_file_atomically_keeps_its_mode_and_marks_it_changed(
        client_as, config, checkout):
    build = checkout()
    path = src(config, build) / CART
    os.chmod(path, 0o750)
    before = os.stat(path)
    client = client_as("member")
    response = save(client, build, CART, "items = ['apple']\r\nmore = 1\r\n")
    assert response.status_code == 303
    after = os.stat(path)
    # A browser ends a textarea's lines with CRLF: the file keeps its LF.
    assert path.read_bytes() == b"items = ['apple']\nmore = 1\n"
    assert stat.S_IMODE(after.st_mode) == 0o750 and after.st_ino != before.st_ino
    assert sorted(os.listdir(path.parent)) == ["cart.py", "models.py"]  # no temporary left
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Saved {CART}." in flashes(page)
    assert f"<code>{CART}</code>" in page and f"Edit {CART}" in page


def test_a_save_over_a_file_changed_since_it_was_opened_is_refused_keeping_the_text(
        client_as, config, checkout):
    build = checkout()
    client = client_as("member")
    stale = digest_in(open_file(client, build, CART))
    assert save(client, build, CART, "items = [1]\n", stale).status_code == 303
    response = save(client, build, CART, "items = [2]\n", stale)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "changed since you opened it" in page and "items = [2]" in page
    assert (src(config, build) / CART).read_text() == "items = [1]\n"
    # Saving the page shown then is a deliberate overwrite.
    assert save(client, build, CART, "items = [2]\n", digest_in(page)).status_code == 303
    assert (src(config, build) / CART).read_text() == "items = [2]\n"


def test_production_is_read_only_for_everyone_and_closed_to_developers(
        client_as, config, db, people, checkout):
    build = checkout("main")
    path = src(config, build) / "shop/models.py"
    owner = client_as("owner")
    page = open_file(owner, build, "shop/models.py")
    assert "Read-only: production is read-only" in page and ">Save</button>" not in page
    assert "readonly" in page and "Commit and push" not in page
    digest = digest_in(page)
    for client in (owner, client_as("admin")):
        assert save(client, build, "shop/models.py", "price = 0\n", digest).status_code == 403
        for action in ("restart", "commit", "update"):
            response = post(client, f"{editor(build)}/{action}", path="shop/models.py",
                            message="x")
            assert response.status_code == 403, action
    member = client_as("member")
    assert member.get(editor(build)).status_code == 403
    assert save(member, build, "shop/models.py", "price = 0\n", digest).status_code == 403
    assert path.read_text() == "price = 1\n"
    assert git.branch_head(config.paths.repos / "acme.git", "main") == build["commit"]
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_outsiders_get_404_and_the_page_and_forms_need_sign_in_and_csrf(
        app, client_as, checkout):
    build = checkout()
    outsider = client_as("outsider")
    assert outsider.get(editor(build)).status_code == 404
    assert save(client_as("member"), build, CART, "x = 1\n").status_code == 303
    assert post(outsider, f"{editor(build)}/save", path=CART, content="y").status_code == 404
    assert app.test_client().get(editor(build)).status_code == 302
    member = client_as("member")
    response = member.post(f"{editor(build)}/save", data={"path": CART, "content": "y"})
    assert response.status_code == 400


def test_big_and_binary_files_are_shown_as_such_and_not_written(
        client_as, config, checkout):
    config.editor.max_file_bytes = 100
    build = checkout(files={"shop/data.csv": "x" * 101, "shop/logo.png": "\x89PNG\0\0"})
    client = client_as("member")
    assert "101 bytes: bigger than the editor opens" in open_file(client, build, "shop/data.csv")
    assert "a binary file (7 bytes)" in open_file(client, build, "shop/logo.png")
    response = save(client, build, CART, "x" * 101, digest="")
    assert response.status_code == 400 and "max_file_bytes" in response.get_data(as_text=True)
    assert (src(config, build) / CART).read_text() == "items = []\n"


def test_restart_and_update_queue_one_task_each_for_the_workers(
        client_as, db, checkout):
    build = checkout(files={"shop/__manifest__.py": "{'name': 'Shop'}\n", "notes.txt": "n\n"})
    client = client_as("member")
    assert post(client, f"{editor(build)}/restart", path=CART).status_code == 303
    busy = post(client, f"{editor(build)}/update", path=CART)
    assert "busy with another task" in " ".join(flashes(client.get(busy.headers["Location"])
                                                        .get_data(as_text=True)))
    with db.transaction() as conn:
        conn.execute("UPDATE tasks SET state = 'done'")
    assert post(client, f"{editor(build)}/update", path=CART).status_code == 303
    nowhere = post(client, f"{editor(build)}/update", path="notes.txt")
    with db.transaction() as conn:
        tasks = conn.execute("SELECT kind, module, state FROM tasks ORDER BY id").fetchall()
    assert [(t["kind"], t["module"]) for t in tasks] == [("restart_server", None),
                                                          ("update_module", "shop")]
    page = client.get(nowhere.headers["Location"]).get_data(as_text=True)
    assert "is in no module" in " ".join(flashes(page))
    assert "Update of module shop: in progress" in page and 'hx-trigger="every 2s"' in page


def test_commit_and_push_commits_as_the_user_on_the_branch_and_queues_its_build(
        client_as, config, db, people, work, checkout):
    build = checkout()
    client = client_as("member")
    assert save(client, build, CART, "items = ['pear']\n").status_code == 303
    response = post(client, f"{editor(build)}/commit", path=CART, message="Sell pears\n")
    assert response.status_code == 303
    head = work.head("feature/cart")
    commit = pygit2.Repository(str(work.bare))[head]
    assert (commit.author.name, commit.author.email) == ("member", "member@127.0.0.1")
    assert commit.message == "Sell pears\n"
    assert [str(p) for p in commit.parent_ids] == [build["commit"]]
    assert commit.tree[CART].data == b"items = ['pear']\n"
    assert commit.tree["shop/models.py"].data == b"price = 1\n"
    newest = builds_of(db, people, "feature/cart")[0]
    assert (newest["commit"], newest["state"]) == (head, "queued")
    assert f"build #{newest['id']} queued" in " ".join(
        flashes(client.get(response.headers["Location"]).get_data(as_text=True)))
    # A second commit of the same edit is refused: the branch moved and changed the file.
    again = post(client, f"{editor(build)}/commit", path=CART, message="Again")
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "these files changed there too: shop/cart.py" in " ".join(flashes(page))
    assert work.head("feature/cart") == head


def test_a_commit_goes_on_top_of_other_files_changed_on_the_branch_meanwhile(
        client_as, config, work, checkout):
    build = checkout()
    upstream = work.commit("Cheaper", {"shop/models.py": "price = 0\n"}, branch="feature/cart")
    client = client_as("member")
    assert save(client, build, CART, "items = ['fig']\n").status_code == 303
    assert post(client, f"{editor(build)}/commit", message="Figs").status_code == 303
    commit = pygit2.Repository(str(work.bare))[work.head("feature/cart")]
    assert [str(p) for p in commit.parent_ids] == [upstream]
    assert commit.tree["shop/models.py"].data == b"price = 0\n"
    assert commit.tree[CART].data == b"items = ['fig']\n"


def test_a_build_without_its_tree_says_why_and_the_tab_shows_where_the_role_may_edit(
        client_as, make_build, checkout):
    queued = make_build("feature/cart")
    member = client_as("member")
    page = member.get(editor(queued)).get_data(as_text=True)
    assert "This build has no source tree: it is not checked out yet." in page
    assert ">Save</button>" not in page and "Restart server" not in page
    development, production = checkout(), checkout("main")
    assert ">Editor</a>" in member.get(f"/builds/{development['id']}").get_data(as_text=True)
    assert ">Editor</a>" not in member.get(f"/builds/{production['id']}").get_data(as_text=True)
    assert ">Editor</a>" in client_as("owner").get(f"/builds/{production['id']}").get_data(
        as_text=True)
