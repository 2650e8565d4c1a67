"""Personal access tokens against real git over HTTP and the API: a token does what its
scopes say and nothing more, stops at its expiry or revocation, and records its last use.

The app is served by waitress in this process (as the daemon serves it); git clones and
pushes through it into a real bare repository (made without the appliance's hooks: no
build is queued, the push itself is the subject).
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from appliance.runtime import git as git_runtime
from appliance.store import users as store_users
from appliance.web.app import create_app
from tests.integration.harness import git

SHOP = {"shop/__init__.py": "", "shop/models.py": "price = 1\n"}


@pytest.fixture
def served(config, db):
    from waitress import create_server
    server = create_server(create_app(config, db), host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, name="waitress-test", daemon=True).start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@pytest.fixture
def repo(config, people, tmp_path):
    """acme's bare repository with one commit on main."""
    bare = config.paths.repos / "acme.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git_runtime.init_repo(bare, tmp_path / "nohooks")
    work = tmp_path / "seed"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    for name, text in SHOP.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Add the shop")
    git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
    return bare


def make_token(db, scopes, expires_at=None, user="member") -> str:
    with db.transaction() as conn:
        return store_users.create_token(conn, user, "test", scopes, expires_at)


def remote(served: str, token: str, user: str = "member") -> str:
    return served.replace("http://", f"http://{user}:{token}@") + "/git/acme.git"


def clone(tmp_path, url: str, name: str = "clone"):
    return git(tmp_path, "clone", "-q", url, name, check=False)


def commit_and_push(folder, url: str):
    (folder / "shop" / "cart.py").write_text("items = []\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "Add the cart")
    return git(folder, "push", url, "HEAD:refs/heads/main", check=False)


def head(bare) -> str:
    return git(bare, "rev-parse", "main").stdout.strip()


def last_used(db, token: str):
    with db.transaction() as conn:
        return conn.execute("SELECT last_used_at FROM tokens WHERE token_hash = %s",
                            (store_users._hash(token),)).fetchone()["last_used_at"]


def test_a_read_only_token_clones_but_cannot_push(served, repo, db, tmp_path):
    token = make_token(db, ["git_read"])
    url = remote(served, token)
    assert clone(tmp_path, url).returncode == 0
    before = head(repo)
    pushed = commit_and_push(tmp_path / "clone", url)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr and "git write" in pushed.stderr, pushed.stderr
    assert head(repo) == before


def test_a_write_token_pushes_and_its_last_use_is_recorded(served, repo, db, tmp_path):
    token = make_token(db, ["git_read", "git_write"])
    assert last_used(db, token) is None
    url = remote(served, token)
    assert clone(tmp_path, url).returncode == 0
    first_use = last_used(db, token)
    assert first_use is not None
    assert commit_and_push(tmp_path / "clone", url).returncode == 0
    assert head(repo) == git(tmp_path / "clone", "rev-parse", "HEAD").stdout.strip()
    assert last_used(db, token) > first_use


def test_a_token_without_git_read_cannot_even_clone(served, repo, db, tmp_path):
    result = clone(tmp_path, remote(served, make_token(db, ["api"])))
    assert result.returncode != 0 and "git read" in result.stderr, result.stderr


@pytest.mark.parametrize("how", ["expired", "revoked", "disabled", "other user's name"])
def test_a_dead_token_is_refused_like_a_wrong_one_and_git_says_why(served, repo, db, tmp_path,
                                                                   how):
    token = make_token(db, list(store_users.ALL_SCOPES))
    user = "member"
    with db.transaction() as conn:
        if how == "expired":
            conn.execute("UPDATE tokens SET expires_at = now() - interval '1 second'")
        elif how == "revoked":
            token_id = conn.execute("SELECT id FROM tokens").fetchone()["id"]
            store_users.revoke_token(conn, people_id(conn, "member"), token_id)
        elif how == "disabled":
            store_users.set_disabled(conn, "member", True)
        else:
            user = "owner"
    result = clone(tmp_path, remote(served, token, user))
    assert result.returncode != 0
    assert "remote: authentication failed" in result.stderr, result.stderr
    assert "expired and revoked tokens are refused" in result.stderr
    assert last_used(db, token) is None


def people_id(conn, name: str) -> int:
    return store_users.user_by_name(conn, name)["id"]


def test_a_wrong_token_is_refused_with_the_same_answer(served, repo, db, tmp_path):
    make_token(db, list(store_users.ALL_SCOPES))
    result = clone(tmp_path, remote(served, "appl_not-a-token"))
    assert result.returncode != 0 and "remote: authentication failed" in result.stderr


# The API: a Bearer token with the api scope, for /api/... only

def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_answers_a_token_with_the_api_scope(app, db, people):
    token = make_token(db, ["api"])
    response = app.test_client().get("/api/projects", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [p["name"] for p in response.get_json()] == ["acme"]
    assert last_used(db, token) is not None


def test_the_api_refuses_a_token_without_the_api_scope(app, db, people):
    response = app.test_client().get("/api/projects", headers=bearer(make_token(db, ["git_read"])))
    assert response.status_code == 403
    assert "API" in response.get_json()["error"]


@pytest.mark.parametrize("expires_at", [None, "past"])
def test_the_api_refuses_an_expired_or_revoked_token(app, db, people, expires_at):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    token = make_token(db, ["api"])
    with db.transaction() as conn:
        if expires_at:
            conn.execute("UPDATE tokens SET expires_at = %s", (past,))
        else:
            conn.execute("UPDATE tokens SET revoked_at = now()")
    response = app.test_client().get("/api/projects", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_never_opens_the_html_pages(app, db, people):
    token = make_token(db, list(store_users.ALL_SCOPES))
    client = app.test_client()
    for path in ("/", "/projects/acme", "/account"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_a_token_s_user_sees_only_their_projects_through_the_api(app, db, people):
    token = make_token(db, ["api"], user="outsider")
    client = app.test_client()
    assert client.get("/api/projects", headers=bearer(token)).get_json() == []
    assert client.get("/api/projects/acme/branches", headers=bearer(token)).status_code == 404
