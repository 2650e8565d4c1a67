"""The web UI through Flask's test client, against a real state database.

Permissions are checked with the fixed users of tests/conftest.py: the project's owner (a
project admin), a member (developer), an outsider, and a site administrator.
"""

from __future__ import annotations

import json
import re

import pytest

from appliance import layout
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.web import logstream
from appliance.web.app import create_app
from tests.helpers_web import PASSWORD, csrf, login

TRACEBACK_LOG = (
    "pip banner line\n"
    "2024-05-01 10:00:00,001 7 INFO db odoo.modules.loading: loading 1 modules...\n"
    "2024-05-01 10:00:01,002 7 ERROR db odoo.addons.shop.tests.test_cart: FAIL: test_total\n"
    "Traceback (most recent call last):\n"
    '  File "/src/user/shop/tests/test_cart.py", line 9, in test_total\n'
    "    self.assertEqual(1, 2)\n"
    "AssertionError: 1 != 2\n"
    "2024-05-01 10:00:02,003 7 WARNING db odoo.models: a warning\n"
)


def sse_events(body: str) -> list[dict]:
    events = []
    for block in body.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            events.append(fields)
    return events


def write_log(config, build_id: int, name: str, text: str):
    path = layout.log_path(config, build_id, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def fast_follow(monkeypatch):
    """Streams that end after half a second, polling often: a test reads the whole body."""
    monkeypatch.setattr(logstream, "FOLLOW_SECONDS", 0.5)
    monkeypatch.setattr(logstream, "POLL_SECONDS", 0.02)


# Signing in

def test_pages_redirect_to_login_when_logged_out(app, make_build):
    build = make_build()
    client = app.test_client()
    for path in ("/", "/projects/acme", f"/builds/{build['id']}",
                 f"/builds/{build['id']}/logs/odoo", f"/builds/{build['id']}/logs/odoo/stream"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    assert client.get("/api/projects").status_code == 401


def test_htmx_request_when_logged_out_is_sent_to_login(app, people):
    response = app.test_client().get("/projects/acme", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_health_answers_without_login(app):
    response = app.test_client().get("/-/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_wrong_password_shows_an_error_and_sets_no_session(app, people):
    client = app.test_client()
    response = login(client, "owner", "not the password")
    assert response.status_code == 200
    assert "Wrong name or password." in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "user_id" not in session
    assert client.get("/").status_code == 302


def test_login_goes_to_next_page_and_logout_ends_the_session(app, people):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"name": "owner", "password": PASSWORD,
                                           "next": "/projects/acme", "csrf_token": csrf(client)})
    assert response.headers["Location"] == "/projects/acme"
    assert client.get("/projects/acme").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf(client)}).status_code == 302
    assert client.get("/projects/acme").status_code == 302


def test_login_never_redirects_to_another_host(app, people):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"name": "owner", "password": PASSWORD,
                                           "next": "//evil.example.com/", "csrf_token": csrf(client)})
    assert response.headers["Location"] == "/"


def test_session_cookie_is_httponly_and_lax(app, people):
    client = app.test_client()
    response = login(client, "owner")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_behind_https(config, db, people):
    config.server.public_url = "https://appliance.example.com"
    client = create_app(config, db).test_client()
    assert "Secure" in login(client, "owner").headers["Set-Cookie"]


# CSRF

def test_post_without_csrf_token_is_refused_and_changes_nothing(client_as, db, make_build):
    build = make_build(state="stopped")
    client = client_as("owner")
    for data, headers in (({}, {}), ({"csrf_token": "wrong"}, {}), ({}, {"X-CSRF-Token": "wrong"})):
        response = client.post(f"/builds/{build['id']}/start", data=data, headers=headers)
        assert response.status_code == 400
        assert "CSRF token missing or wrong" in response.get_data(as_text=True)
    with db.transaction() as conn:
        assert store_builds.pending_task(conn, build["id"]) is None


def test_login_form_needs_the_csrf_token(app, people):
    client = app.test_client()
    response = client.post("/login", data={"name": "owner", "password": PASSWORD})
    assert response.status_code == 400
    with client.session_transaction() as session:
        assert "user_id" not in session


def test_htmx_post_with_the_header_token_is_accepted(client_as, db, make_build):
    build = make_build(state="stopped")
    client = client_as("owner")
    response = client.post(f"/builds/{build['id']}/start",
                           headers={"X-CSRF-Token": csrf(client), "HX-Request": "true"})
    assert response.status_code == 303
    with db.transaction() as conn:
        assert store_builds.pending_task(conn, build["id"])["kind"] == "start_server"


def test_git_blueprint_is_exempt_from_csrf(app):
    # No CSRF token and no session: git's own authentication answers, not the CSRF check.
    response = app.test_client().post("/git/acme.git/git-receive-pack")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "CSRF" not in response.get_data(as_text=True)


# Permissions

@pytest.mark.parametrize("name", ["owner", "member", "admin"])
def test_members_and_admins_see_the_project(client_as, make_build, config, name):
    build = make_build(branch="feature")  # development: every member's
    write_log(config, build["id"], "odoo", "hello\n")
    client = client_as(name)
    assert client.get("/projects/acme").status_code == 200
    assert client.get(f"/builds/{build['id']}").status_code == 200
    assert client.get(f"/builds/{build['id']}/logs/odoo").status_code == 200
    assert client.get(f"/builds/{build['id']}/logs/odoo/download").status_code == 200
    assert client.get("/api/projects/acme/builds").status_code == 200
    assert "acme" in client.get("/").get_data(as_text=True)


def test_a_developer_sees_production_s_history_but_not_its_logs_nor_its_start_button(
        client_as, make_build, config, db):
    build = make_build(state="stopped", result="success")  # main: production
    write_log(config, build["id"], "odoo", "production data\n")
    client = client_as("member")
    page = client.get(f"/builds/{build['id']}")
    assert page.status_code == 200 and "Start server" not in page.get_data(as_text=True)
    for path in (f"/builds/{build['id']}/logs/odoo", f"/builds/{build['id']}/logs/odoo/download"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "production data" not in response.get_data(as_text=True)
    response = client.post(f"/builds/{build['id']}/start", data={"csrf_token": csrf(client)})
    assert response.status_code == 403
    with db.transaction() as conn:
        assert store_builds.pending_task(conn, build["id"]) is None


def test_outsider_gets_404_on_the_project_and_its_builds(client_as, make_build, config, db):
    build = make_build(state="stopped")
    write_log(config, build["id"], "odoo", "secret\n")
    client = client_as("outsider")
    paths = ["/projects/acme", f"/builds/{build['id']}", f"/builds/{build['id']}/logs/odoo",
             f"/builds/{build['id']}/logs/odoo/stream", f"/builds/{build['id']}/logs/odoo/download",
             "/api/projects/acme/builds"]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.get_data(as_text=True)
    # The answer for a project that does not exist is the same.
    assert client.get("/projects/nope").get_data() == client.get("/projects/acme").get_data()
    response = client.post(f"/builds/{build['id']}/start", data={"csrf_token": csrf(client)})
    assert response.status_code == 404
    with db.transaction() as conn:
        assert store_builds.pending_task(conn, build["id"]) is None
    assert "acme" not in client.get("/").get_data(as_text=True)
    assert client.get("/api/projects").get_json() == []


# Pages

def test_projects_list_shows_version_branch_count_latest_build_and_demo_label(
        client_as, db, make_build):
    make_build("main", result="success", state="running")
    make_build("feature")
    with db.transaction() as conn:
        store_projects.create_project(conn, "demo", "17.0", "appl_", demo=True)
    page = client_as("admin").get("/").get_data(as_text=True)
    assert "offline demo: stand-in Odoo, not real Odoo" in page
    row = page[page.index('href="/projects/acme"'):page.index('href="/projects/demo"')]
    assert "18.0" in row and "<td>2</td>" in row
    assert 'class="dot grey"' in row  # the latest build is the queued one on feature


def test_project_page_lists_branches_by_stage_with_coloured_cells(client_as, make_build):
    make_build("main", result="failure", state="failed", message="Break it")
    newest_main = make_build("main", result="success", state="running", commit="a" * 40,
                             message="Fix the invoice")
    make_build("feature-x", result="warning", state="running")
    make_build("feature-y")
    make_build("old", state="stopped", result="success")
    page = client_as("owner").get("/projects/acme").get_data(as_text=True)

    production = page[page.index('id="stage-production"'):page.index('id="stage-staging"')]
    development = page[page.index('id="stage-development"'):]
    assert 'data-branch="main"' in production and 'data-branch="main"' not in development
    for branch in ("feature-x", "feature-y", "old"):
        assert f'data-branch="{branch}"' in development
    cells = re.findall(r'<a class="cell ([a-z -]+)" data-build="(\d+)"', production)
    assert [colour.split()[0] for colour, _ in cells] == ["green", "red"]  # newest first
    assert cells[0][1] == str(newest_main["id"])
    assert 'title="aaaaaaa Fix the invoice"' in production
    assert re.search(r'class="cell yellow[^"]*" data-build', development)
    assert re.search(r'class="cell grey" data-build', development)
    assert re.search(r'class="cell dark result-success" data-build', development)
    assert f"/git/acme.git" in page and 'href="/account#tokens"' in page
    assert 'hx-trigger="every 2s"' in page


def test_project_page_for_htmx_is_the_branches_fragment(client_as, make_build):
    make_build("main")
    response = client_as("owner").get("/projects/acme", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert 'data-branch="main"' in body
    assert "<html" not in body and "git remote add" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_build_page_shows_steps_failing_tests_warnings_and_address(client_as, db, make_build, config):
    build = make_build(state="running", result="failure", host_port=18069,
                       reason="1 test failed",
                       failed_tests=[{"module": "shop", "name": "test_cart.TestCart.test_total",
                                      "kind": "failure", "traceback": "Traceback ...\nAssertionError: 1 != 2"}],
                       warnings=["2024-05-01 WARNING db odoo.models: beware"])
    with db.transaction() as conn:
        store_builds.plan_steps(conn, build["id"], ["checkout", "install", "start"])
        store_builds.step_finished(conn, build["id"], "checkout", "done", 1.25)
        store_builds.step_finished(conn, build["id"], "install", "failed", 75.0)
    page = client_as("member").get(f"/builds/{build['id']}").get_data(as_text=True)
    assert build["commit"] in page and "Ada &lt;ada@example.com&gt;" in page and "Add the shop" in page
    assert "1 test failed" in page
    steps = re.findall(r'<tr class="step (\w+)">\s*<td>(\w+)', page)
    assert steps == [("done", "checkout"), ("failed", "install"), ("pending", "start")]
    assert "1.2 s" in page and "1 min 15 s" in page
    assert "test_cart.TestCart.test_total" in page and "<details>" in page
    assert "AssertionError: 1 != 2" in page
    assert "odoo.models: beware" in page
    url = f"http://{config.runtime.public_host}:18069/"
    assert f'href="{url}"' in page and ">Connect</a>" in page
    assert "Start server" not in page
    assert 'hx-trigger="every 2s"' not in page  # finished: nothing to poll


def test_build_status_polls_while_in_progress_and_stops_when_finished(client_as, db, make_build):
    build = make_build(state="testing")
    client = client_as("owner")
    fragment = client.get(f"/builds/{build['id']}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith("<div id=\"build-status\"")
    assert 'hx-trigger="every 2s"' in fragment and "<html" not in fragment
    with db.transaction() as conn:
        store_builds.set_state(conn, build["id"], "running", result="success")
    fragment = client.get(f"/builds/{build['id']}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="build-status"' in fragment and "hx-trigger" not in fragment


def test_start_server_asks_the_workers_once_and_disables_the_button(client_as, db, make_build):
    build = make_build(state="stopped", result="success")
    client = client_as("owner")
    page = client.get(f"/builds/{build['id']}").get_data(as_text=True)
    assert "Start server" in page and "disabled" not in page
    for _ in range(2):
        response = client.post(f"/builds/{build['id']}/start", data={"csrf_token": csrf(client)})
        assert response.status_code == 303
    with db.transaction() as conn:
        count = conn.execute("SELECT count(*) AS n FROM tasks WHERE build_id = %s",
                             (build["id"],)).fetchone()["n"]
    assert count == 1
    page = client.get(f"/builds/{build['id']}").get_data(as_text=True)
    assert "Starting…" in page and "disabled" in page
    assert 'hx-trigger="every 2s"' in page  # polls until the server is up


def test_start_server_is_refused_unless_stopped(client_as, db, make_build):
    build = make_build(state="running", host_port=18070)
    client = client_as("owner")
    response = client.post(f"/builds/{build['id']}/start", data={"csrf_token": csrf(client)})
    assert response.status_code == 303 and response.headers["Location"] == f"/builds/{build['id']}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"build #{build['id']} is running: only a stopped build can be started" in page
    with db.transaction() as conn:
        assert store_builds.pending_task(conn, build["id"]) is None


# Logs

def test_log_stream_sends_a_traceback_as_one_entry_with_byte_offsets(
        client_as, make_build, config, fast_follow):
    build = make_build()
    write_log(config, build["id"], "odoo", TRACEBACK_LOG)
    response = client_as("owner").get(f"/builds/{build['id']}/logs/odoo/stream")
    assert response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    lines = [e for e in events if e.get("event") is None]
    assert [json.loads(e["data"]) for e in lines] == [
        {"line": line, "cont": cont} for line, cont in zip(
            TRACEBACK_LOG.splitlines(), [False, False, False, True, True, True, True, False])]
    encoded = TRACEBACK_LOG.encode()
    ends = [i + 1 for i, byte in enumerate(encoded) if byte == ord("\n")]
    assert [int(e["id"]) for e in lines] == ends
    assert events[-1]["event"] == "timeout"
    # Grouped as the browser does: the traceback is one entry.
    entries = []
    for e in lines:
        data = json.loads(e["data"])
        if data["cont"]:
            entries[-1] += "\n" + data["line"]
        else:
            entries.append(data["line"])
    assert len(entries) == 4
    assert entries[2].startswith("2024-05-01 10:00:01,002 7 ERROR") and entries[2].endswith("1 != 2")


def test_log_stream_resumes_from_an_offset(client_as, make_build, config, fast_follow):
    build = make_build()
    write_log(config, build["id"], "odoo", TRACEBACK_LOG)
    resume_at = len(TRACEBACK_LOG[:TRACEBACK_LOG.index("  File")].encode())  # mid-traceback
    client = client_as("owner")
    url = f"/builds/{build['id']}/logs/odoo/stream"
    for response in (client.get(f"{url}?offset={resume_at}"),
                     client.get(url, headers={"Last-Event-ID": str(resume_at)})):
        lines = [json.loads(e["data"]) for e in sse_events(response.get_data(as_text=True))
                 if e.get("event") is None]
        assert lines[0] == {"line": '  File "/src/user/shop/tests/test_cart.py", line 9, in test_total',
                            "cont": True}
        assert len(lines) == 4
    assert client.get(f"{url}?offset=-1").status_code == 400


def test_log_stream_waits_for_the_file_and_for_complete_lines(tmp_path):
    path = tmp_path / "odoo.log"
    reader = logstream.LogReader(path, 0)
    assert reader.read_events() == []
    path.write_bytes(b"2024-05-01 10:00:00,001 7 INFO db x: one\npartial")
    first = reader.read_events()
    assert len(first) == 1 and "id: 41\n" in first[0]
    assert reader.read_events() == []
    with path.open("ab") as fh:
        fh.write(b" line\n")
    second = reader.read_events()
    assert len(second) == 1 and '"line": "partial line", "cont": true' in second[0]
    assert "id: 54\n" in second[0]
    reader.close()


def test_lines_before_any_record_are_entries_of_their_own(tmp_path):
    path = tmp_path / "pip.log"
    path.write_text("Collecting x\nInstalling y\n")
    reader = logstream.LogReader(path, 0)
    assert ['"cont": false' in e for e in reader.read_events()] == [True, True]
    reader.close()
    resumed = logstream.LogReader(path, len("Collecting x\n"))
    assert '"cont": false' in resumed.read_events()[0]
    resumed.close()


def test_follow_ends_with_timeout_and_releases_the_file(tmp_path):
    path = tmp_path / "odoo.log"
    path.write_text("a\n")
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    stream = logstream.follow(path, follow_seconds=1, poll_seconds=0.25, keepalive_seconds=0.5,
                              clock=lambda: now[0], sleep=sleep)
    chunks = list(stream)
    assert chunks[0].startswith("retry:")
    assert any(c == ": keepalive\n\n" for c in chunks)
    assert chunks[-1].startswith("event: timeout\n")
    closed = logstream.follow(path, clock=lambda: now[0], sleep=sleep)
    next(closed)
    next(closed)
    closed.close()  # what the server does when the client went away


def test_log_page_without_js_shows_the_file_in_a_pre(client_as, make_build, config):
    build = make_build()
    write_log(config, build["id"], "install", "step one <b>\nstep two\n")
    page = client_as("owner").get(f"/builds/{build['id']}/logs/install").get_data(as_text=True)
    assert "<pre class=\"log-raw\">step one &lt;b&gt;\nstep two\n</pre>" in page
    assert f'data-stream="/builds/{build["id"]}/logs/install/stream"' in page
    assert 'data-offset="0"' in page
    assert "/static/logs.js" in page and "<script>" not in page


def test_log_page_shows_the_last_two_megabytes(make_build, config):
    build = make_build()
    line = "x" * 99 + "\n"
    path = write_log(config, build["id"], "odoo", line * 30000)  # 3 MB
    text, start, end, truncated = logstream.tail(path)
    assert truncated and end == path.stat().st_size
    assert len(text) <= logstream.PAGE_TAIL_BYTES and start % 100 == 0


def test_log_of_a_build_without_files_says_so(client_as, make_build):
    build = make_build()
    client = client_as("owner")
    page = client.get(f"/builds/{build['id']}/logs/pip").get_data(as_text=True)
    assert "does not exist yet" in page and "Download" not in page
    assert client.get(f"/builds/{build['id']}/logs/pip/download").status_code == 404


def test_unknown_log_is_404(client_as, make_build):
    build = make_build()
    client = client_as("owner")
    for suffix in ("", "/stream", "/download"):
        assert client.get(f"/builds/{build['id']}/logs/passwd{suffix}").status_code == 404


def test_log_download_is_a_plain_text_attachment(client_as, make_build, config):
    build = make_build()
    write_log(config, build["id"], "odoo", TRACEBACK_LOG)
    response = client_as("owner").get(f"/builds/{build['id']}/logs/odoo/download")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"] == f"attachment; filename=build-{build['id']}-odoo.log"
    assert response.get_data(as_text=True) == TRACEBACK_LOG


# JSON twins and headers

def test_api_lists_builds_with_steps_and_iso_times(client_as, db, make_build, config):
    make_build("feature")
    build = make_build("main", state="running", result="success", host_port=18071)
    with db.transaction() as conn:
        store_builds.plan_steps(conn, build["id"], ["checkout"])
        store_builds.step_finished(conn, build["id"], "checkout", "done", 0.5)
    client = client_as("member")
    rows = client.get("/api/projects/acme/builds?branch=main").get_json()
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == build["id"] and row["branch"] == "main" and row["result"] == "success"
    assert row["url"] == f"http://{config.runtime.public_host}:18071/"
    assert row["steps"] == [{"name": "checkout", "state": "done", "seconds": 0.5}]
    assert row["created_at"].startswith(str(build["created_at"].year))
    assert len(client.get("/api/projects/acme/builds").get_json()) == 2
    projects = client.get("/api/projects").get_json()
    assert projects[0]["name"] == "acme" and projects[0]["branch_count"] == 2
    assert projects[0]["latest_build"] == {"id": build["id"], "state": "running",
                                           "result": "success"}


def test_every_response_carries_the_security_headers(app, client_as, people):
    for response in (app.test_client().get("/login"), client_as("owner").get("/"),
                     app.test_client().get("/-/health")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'self'; style-src 'self' 'unsafe-inline'")


def test_pages_have_no_inline_scripts(client_as, make_build, config):
    build = make_build()
    write_log(config, build["id"], "odoo", "x\n")
    client = client_as("owner")
    for path in ("/", "/projects/acme", f"/builds/{build['id']}", f"/builds/{build['id']}/logs/odoo"):
        page = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag, (path, tag)


def test_stream_ends_when_the_client_goes_away(app, make_build, config, people, monkeypatch):
    import socket
    import threading

    from waitress import create_server

    monkeypatch.setattr(logstream, "KEEPALIVE_SECONDS", 0.2)
    closed = threading.Event()
    real_close = logstream.LogReader.close

    def close(reader):
        real_close(reader)
        closed.set()

    monkeypatch.setattr(logstream.LogReader, "close", close)
    build = make_build()
    write_log(config, build["id"], "odoo", "first\n")
    cookie = app.session_interface.get_signing_serializer(app).dumps(
        {"user_id": people["owner"]["id"], "generation": people["owner"]["session_generation"]})
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
            sock.sendall(f"GET /builds/{build['id']}/logs/odoo/stream HTTP/1.1\r\n"
                         f"Host: localhost\r\nCookie: appliance_session={cookie}\r\n\r\n"
                         .encode())
            received = b""
            while b"first" not in received:
                received += sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
        assert closed.wait(5), "the stream kept running after the client left"
    finally:
        server.close()


def test_the_offline_demo_is_labelled_on_every_page(app, config):
    client = app.test_client()
    config.server.offline_demo = True
    response = client.get("/login")
    assert b"Offline demo" in response.data and b"not on real Odoo" in response.data
    config.server.offline_demo = False
    assert b"Offline demo" not in client.get("/login").data
