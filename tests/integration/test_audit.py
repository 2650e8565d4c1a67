"""The audit trail against the real state database: every POST of the app leaves a row
and no secret does; refusals are recorded with their reason; pushes and commands of the
CLI are too; the pages filter and page through it, for the appliance and per project;
retention removes what is past it.
"""

from __future__ import annotations

import re
import sys

import pytest

from appliance import cli as cli_module
from appliance import daemon
from appliance.jobs import audit as audit_jobs
from appliance.jobs import push
from appliance.services import Services
from appliance.store import audit
from appliance.store import users as store_users
from appliance.web import audit_hook
from appliance.web.auth import UNSAFE_METHODS
from tests.helpers_web import PASSWORD, login, post
from tests.integration.harness import free_port, write_config

# What a request may carry that must never be written: each in a field of its own name.
SECRETS = {"password": "pw-secret-1", "new_password": "pw-secret-2",
           "confirm_password": "pw-secret-2", "current_password": "pw-secret-3",
           "relay_password": "relay-secret-4", "token": "token-secret-5",
           "code": "code-secret-6", "totp": "totp-secret-7", "content": "content-secret-8",
           "private_key": "key-secret-9"}
# A value for each part of a URL (a row is written whether the thing exists or not).
URL_VALUES = {"name": "acme", "branch": "main", "domain": "shop.test", "user": "member",
              "user_name": "member", "upload_id": "u" * 20, "token": "tokenpart" * 4,
              "project": "acme", "build": "1", "id": "1", "index": "0", "path": "README"}


def trail(db) -> list[dict]:
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM audit ORDER BY id").fetchall()


def trail_text(db) -> str:
    with db.transaction() as conn:
        return " ".join(row["t"] for row in conn.execute("SELECT audit::text AS t FROM audit"))


def unsafe_routes(app, build_id: int) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) of every state-changing route but git's and the proxy's,
    signing out last."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in audit_hook.QUIET_BLUEPRINTS:
            continue
        path = rule.rule
        for arg in rule.arguments:
            value = str(build_id) if arg.endswith("_id") else URL_VALUES.get(arg, "x")
            path = re.sub(rf"<(?:[a-z]+:)?{arg}>", value, path)
        found += [(method, path, rule.endpoint) for method in sorted(rule.methods & UNSAFE_METHODS)]
    return sorted(found, key=lambda item: item[2] == "auth.logout")


def test_every_post_of_the_app_leaves_a_row_and_no_secret_does(app, client_as, db,
                                                               make_build):
    build = make_build("main", state="running", result="success", host_port=18093)
    client = client_as("admin")
    routes = unsafe_routes(app, build["id"])
    assert len(routes) > 25
    for method, path, endpoint in routes:
        before = len(trail(db))
        client.open(path, method=method, data={"csrf_token": client_csrf(client),
                                               "stage": "staging", **SECRETS})
        rows = trail(db)
        assert len(rows) == before + 1, (method, path)
        assert rows[-1]["action"] == endpoint and rows[-1]["source"] == "web"
    text = trail_text(db)
    leaked = [value for value in SECRETS.values() if value in text]
    assert leaked == []
    assert any(row["details"].get("stage") == "staging" for row in trail(db))  # a safe field


def client_csrf(client) -> str:
    with client.session_transaction() as session:
        return session.setdefault("csrf", "test-token-" + "x" * 20)


def test_a_relay_password_and_a_user_password_never_reach_the_trail(app, client_as, db,
                                                                    people):
    owner = client_as("owner")
    response = post(owner, "/projects/acme/settings", relay_host="smtp.example.com",
                    relay_port="587", relay_security="starttls", relay_user="shop",
                    relay_password="relay-pass-91", mail_keep_days="30",
                    mail_keep_count="1000")
    assert response.status_code == 303
    with db.transaction() as conn:
        assert conn.execute("SELECT relay_password FROM projects").fetchone()[
            "relay_password"] == "relay-pass-91"
    new = "a tidy sloth in winter"
    assert post(owner, "/account/password", current_password=PASSWORD, new_password=new,
                confirm_password=new).status_code in (200, 303)
    login(app.test_client(), "member", "wrong-pass-77")
    rows = trail(db)
    assert [r["action"] for r in rows][-3:] == ["projects.save_settings",
                                                "account.change_password", "auth.login"]
    assert rows[-3]["details"]["relay_host"] == "smtp.example.com"
    assert rows[-1]["user_name"] == "member" and rows[-1]["outcome"] == "refused"
    text = trail_text(db)
    assert not [s for s in ("relay-pass-91", PASSWORD, new, "wrong-pass-77") if s in text]


def test_refusals_are_recorded_with_who_where_and_why(client_as, db, people):
    member, outsider = client_as("member"), client_as("outsider")
    assert post(member, "/projects/acme/settings", relay_port="25").status_code == 403
    assert member.get("/projects/acme/audit").status_code == 403
    assert outsider.get("/admin/users").status_code == 404
    rows = trail(db)[-3:]
    assert [(r["action"], r["outcome"], r["status"], r["user_name"]) for r in rows] == [
        ("projects.save_settings", "denied", 403, "member"),
        ("audit.project_trail", "denied", 403, "member"),
        ("admin_users.users", "not_found", 404, "outsider")]
    assert "does not allow this" in rows[0]["reason"] and rows[0]["project_name"] == "acme"
    assert rows[0]["address"] == "127.0.0.1"


def test_a_push_is_recorded_with_its_branch_and_build(config, db, people, work):
    head, base = work.head("feature/cart"), work.head("main")
    with db.transaction() as conn:
        owner = store_users.user_by_name(conn, "owner")
        push.received(conn, config, people["project"], owner,
                      f"{base} {head} refs/heads/feature/cart\n")
    [row] = trail(db)
    assert (row["source"], row["action"], row["user_name"], row["branch"]) == (
        "git", "git.push", "owner", "feature/cart")
    assert row["build_id"] and row["details"]["new"] == head


@pytest.fixture
def run_cli(monkeypatch, tmp_path, config, db, state_dbname):
    """`appliance --config ... ARGS` as cli.main runs it; returns the exit status."""
    path = write_config(tmp_path, state_dbname, free_port())
    monkeypatch.setattr(daemon, "open_services", lambda cfg: Services(config, db))

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["appliance", "--config", str(path), *args])
        with pytest.raises(SystemExit) as ended:
            cli_module.main()
        return ended.value.code
    return run


def test_a_command_that_changes_state_is_recorded_and_a_read_is_not(run_cli, db, people):
    assert run_cli("project", "archive", "acme") == 0
    assert run_cli("project", "list") == 0
    assert run_cli("project", "archive", "nope") == 1
    assert run_cli("--as", "member", "project", "unarchive", "acme") == 1
    rows = trail(db)
    assert [(r["action"], r["outcome"], r["status"]) for r in rows] == [
        ("cli.project archive", "ok", 0), ("cli.project archive", "not_found", 1),
        ("cli.project unarchive", "denied", 1)]
    assert rows[0]["source"] == "cli" and rows[0]["project_name"] == "acme"
    assert rows[0]["user_name"] and rows[0]["address"] == "local"
    assert rows[1]["reason"] == "no project 'nope'"
    assert rows[2]["user_name"] == "member" and rows[2]["details"]["operator"]


def add_rows(db, people, count: int, **fields) -> None:
    with db.transaction() as conn:
        for _ in range(count):
            audit.record(conn, source="web", outcome="ok", **{"action": "branches.merge",
                                                               **fields})


def shown_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="audit-(\d+)"', page)]


def test_the_trail_filters_by_user_project_action_and_days(client_as, db, people):
    with db.transaction() as conn:
        owner = store_users.user_by_name(conn, "owner")
    add_rows(db, people, 2, user=owner, project=people["project"])
    add_rows(db, people, 1, user_name="root", action="cli.project create")
    add_rows(db, people, 1, user=owner, action="builds.start")
    with db.transaction() as conn:
        conn.execute("UPDATE audit SET at = '2024-03-01 12:00+00' WHERE id = 1")
    admin = client_as("admin")

    def ids(query):
        response = admin.get(f"/admin/audit?{query}")
        assert response.status_code == 200
        return sorted(shown_ids(response.get_data(as_text=True)))

    assert ids("user=owner") == [1, 2, 4]
    assert ids("project=acme") == [1, 2]
    assert ids("action=cli.project+create") == [3]
    assert ids("until=2024-03-01") == [1]
    assert ids("since=2024-03-02&user=owner") == [2, 4]
    assert admin.get("/admin/audit?since=March").status_code == 400


def test_the_trail_is_paged_newest_first(client_as, db, people):
    admin = client_as("admin")  # its sign-in is row 1
    add_rows(db, people, 2 * audit.PAGE_SIZE + 9, user_name="root")
    first = admin.get("/admin/audit").get_data(as_text=True)
    assert shown_ids(first) == list(range(2 * audit.PAGE_SIZE + 10, audit.PAGE_SIZE + 10, -1))
    assert 'id="audit-newer"' not in first
    seen = shown_ids(first)
    page = first
    while 'id="audit-older"' in page:
        older = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
        page = admin.get(older).get_data(as_text=True)
        seen += shown_ids(page)
    assert seen == list(range(2 * audit.PAGE_SIZE + 10, 0, -1))
    newer = re.search(r'href="([^"]+)" rel="prev"', page).group(1).replace("&amp;", "&")
    assert shown_ids(admin.get(newer).get_data(as_text=True))[-1] == 11


def test_a_projects_trail_is_its_admins_and_shows_its_rows_only(client_as, db, people):
    add_rows(db, people, 2, project=people["project"])
    add_rows(db, people, 1, user_name="root")  # no project
    owner = client_as("owner")
    page = owner.get("/projects/acme/audit").get_data(as_text=True)
    assert sorted(shown_ids(page)) == [1, 2]
    assert 'id="audit-link"' in owner.get("/projects/acme/settings").get_data(as_text=True)
    assert client_as("member").get("/projects/acme/audit").status_code == 403
    assert client_as("outsider").get("/projects/acme/audit").status_code == 404


def test_retention_removes_the_rows_past_it(config, db, people):
    add_rows(db, people, 3, user_name="root")
    with db.transaction() as conn:
        conn.execute("UPDATE audit SET at = now() - interval '366 days' WHERE id = 1")
        conn.execute("UPDATE audit SET at = now() - interval '364 days' WHERE id = 2")
    config.audit.retention_days = 365
    assert audit_jobs.prune(Services(config, db)) == 1
    assert [row["id"] for row in trail(db)] == [2, 3]
