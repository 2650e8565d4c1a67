"""Caddy in front of a real daemon: names over HTTPS (Caddy's internal CA), routes that
survive restarts of either, the maintenance page during a full deploy, the stopped page,
and no certificate for a name the appliance does not serve.

Caddy runs on loopback ports of its own, with its data in a temporary folder; names are
resolved with curl's --resolve.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from appliance import layout
from appliance.jobs import containers
from appliance.jobs.proxy_config import ACCESS_COOKIE
from appliance.store import builds as builds_store
from appliance.store import domains as domains_store
from appliance.store import projects as projects_store
from appliance.store import users as users_store
from appliance.web import build_access
from tests.caddy_server import CaddyUnderTest
from tests.integration.harness import Appliance, ShopWork

pytestmark = pytest.mark.docker

DOMAIN = "apps.test"


# The access cookie of a signed-in member, sent by get() unless told otherwise.
MEMBER = {"cookie": ""}


def get(caddy: CaddyUnderTest, host: str, path: str = "/",
        cookie: str | None = None) -> tuple[int, dict, str]:
    """GET https://host/path through Caddy, checking its certificate against Caddy's CA:
    (status, headers, body); status 0 when no TLS connection could be made. It carries a
    member's access cookie unless given another (or "" for none)."""
    cookie = MEMBER["cookie"] if cookie is None else cookie
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", *(["-H", f"Cookie: {cookie}"] if cookie else []),
         "--cacert", str(caddy.root_certificate),
         "--resolve", f"{host}:{caddy.https_port}:127.0.0.1", "-D", "-",
         f"https://{host}:{caddy.https_port}{path}"], capture_output=True, text=True)
    if out.returncode != 0:
        return 0, {}, out.stderr
    head, _, body = out.stdout.partition("\n\n")  # text mode: \r\n reads as \n
    lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def visit(caddy: CaddyUnderTest, host: str, path: str = "/",
          cookie: str | None = None) -> tuple[int, dict, str]:
    """A GET as a browser's user makes it: one cut by Caddy 2.6 loading a new
    configuration at that moment (status 0 or 502) is made again, twice at most."""
    for _ in range(3):
        answer = get(caddy, host, path, cookie)
        if answer[0] not in (0, 502):
            return answer
        time.sleep(0.2)
    return answer


def wait_for(check, timeout: float = 15.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def caddy(tmp_path_factory):
    server = CaddyUnderTest(tmp_path_factory.mktemp("caddy"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory, caddy):
    folder = tmp_path_factory.mktemp("proxy")
    patch = pytest.MonkeyPatch()
    settings = {"BASE_DOMAIN": DOMAIN, "ADMIN": caddy.admin, "TLS": "internal",
                "HTTPS_PORT": str(caddy.https_port), "HTTP_PORT": str(caddy.http_port),
                "CHECK_SECONDS": "0.5"}
    for key, value in settings.items():
        patch.setenv(f"APPLIANCE_PROXY_{key}", value)
    patch.setenv("APPLIANCE_BUILDS_SLEEP_MINUTES", "1")
    appliance = Appliance(folder, "proxy")
    appliance.config.proxy = dataclasses.replace(
        appliance.config.proxy, base_domain=DOMAIN, https_port=caddy.https_port)
    try:
        appliance.start()
        appliance.token = appliance.make_user("admin")
        appliance.make_project("shop")
        with appliance.db.transaction() as conn:
            admin = users_store.user_by_name(conn, "admin")
        MEMBER["cookie"] = f"{ACCESS_COOKIE}={build_access.token_for(appliance.config, admin)}"
        appliance.work = ShopWork(appliance, folder / "work")
        appliance.work.commit("v1")
        build = appliance.work.push()
        assert build["state"] == "running", build["reason"]
        appliance.build = build
        yield appliance
    finally:
        appliance.close()
        patch.undo()


def names(app, build) -> tuple[str, str]:
    return (layout.build_host(app.config, "shop", "main", build["id"]),
            layout.branch_host(app.config, "shop", "main"))


def test_a_pushed_build_answers_at_its_own_name_and_its_branch_s_over_https(app, caddy):
    build_name, branch_name = names(app, app.build)
    assert build_name == f"main-{app.build['id']}.shop.{DOMAIN}"
    for host in (build_name, branch_name):
        status, _, body = wait_for(lambda: (r := get(caddy, host, "/web/login"))[0] == 200
                                   and r) or get(caddy, host, "/web/login")
        assert status == 200, body
    # The push said where it would answer, and its pages show that name.
    assert f"it will answer at https://{build_name}:{caddy.https_port}/ and " \
           f"https://{branch_name}:{caddy.https_port}/" in app.work.pushed
    assert layout.build_url(app.config, {**app.build, "project": "shop", "branch": "main"}) \
        == f"https://{build_name}:{caddy.https_port}/"


def test_the_ui_answers_at_the_base_domain_and_keeps_the_proxy_s_paths_to_itself(app, caddy):
    status, _, _ = get(caddy, DOMAIN, "/-/health")
    assert status == 200
    # Caddy's own questions to the daemon are not reachable from outside.
    status, _, _ = get(caddy, DOMAIN, f"/_proxy/ask?domain={DOMAIN}")
    assert status == 404
    status, _, _ = get(caddy, DOMAIN, f"/_proxy/stopped/{app.build['id']}")
    assert status == 404


def test_the_on_demand_certificate_question_is_yes_only_for_names_the_appliance_serves(app):
    build_name, branch_name = names(app, app.build)

    def ask(domain: str) -> int:
        url = f"{app.url}/_proxy/ask?domain={urllib.parse.quote(domain)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert ask(build_name) == ask(branch_name) == ask(DOMAIN) == 200
    assert ask(build_name.upper() + ".") == 200
    for other in (f"nothing.shop.{DOMAIN}", "example.com", f"main-999.shop.{DOMAIN}", ""):
        assert ask(other) == 404, other


def test_doctor_says_caddy_serves_the_appliance_s_names_or_that_it_cannot_be_reached(
        app, caddy):
    from appliance import doctor
    cfg = dataclasses.replace(app.config)
    cfg.proxy = dataclasses.replace(app.config.proxy, admin=caddy.admin)
    check = doctor.proxy_check(cfg)
    assert check.status == "ok" and f"under {DOMAIN}" in check.detail, check
    cfg.proxy = dataclasses.replace(cfg.proxy, admin="127.0.0.1:9")
    check = doctor.proxy_check(cfg)
    assert check.status == "fail" and "caddy-api" in check.fix


def test_a_name_the_appliance_does_not_serve_gets_no_certificate(app, caddy):
    status, _, error = get(caddy, f"nothing.shop.{DOMAIN}")
    assert status == 0 and ("SSL" in error.upper() or "alert" in error), error


def test_caddy_back_without_its_configuration_gets_every_route_again(app, caddy):
    build_name, _ = names(app, app.build)
    caddy.stop()
    caddy.start(resume=False)  # a Caddy that lost what it was told
    status, _, _ = wait_for(lambda: (r := get(caddy, build_name, "/web/login"))[0] == 200
                            and r, timeout=20) or (0, {}, "")
    assert status == 200


def test_a_daemon_restart_loses_no_route(app, caddy):
    build_name, branch_name = names(app, app.build)
    app.stop()
    try:
        # Caddy kept its routes while the daemon was away.
        assert visit(caddy, build_name, "/web/login")[0] == 200
    finally:
        app.start()
    assert visit(caddy, branch_name, "/web/login")[0] == 200


def test_production_shows_the_maintenance_page_during_a_full_deploy_then_serves(app, caddy):
    _, branch_name = names(app, app.build)
    seen: list[tuple[int, str, bool]] = []
    errors = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            status, headers, body = get(caddy, branch_name, "/web/login")
            seen.append((status, headers.get("retry-after", ""), "maintenance" in body.lower()))
            if status == 0:
                errors.append(body)
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        app.work.commit("v2")  # a version bump: a full deploy, server stopped meanwhile
        build = app.work.push()
    finally:
        done.set()
        poller.join()
    assert (build["state"], build["deploy"]) == ("running", "full"), build["reason"]
    statuses = [status for status, _, _ in seen]
    maintenance = [entry for entry in seen if entry[0] == 503]
    assert maintenance, f"no maintenance page seen: {statuses}"
    assert all(retry and is_page for _, retry, is_page in maintenance), maintenance
    runs = [f"{s}x{len(list(g))}" for s, g in itertools.groupby(statuses)]
    # Debian 12's Caddy (2.6) can cut a request that arrives while it loads a new
    # configuration; the deploy makes two loads (server stopped, new server up), so at
    # most one cut request each, never a run of errors.
    cut = [status for status in statuses if status in (0, 502)]
    assert len(cut) <= 2, (runs, errors)
    # Serving again once the new build runs (Caddy takes its route right after).
    assert wait_for(lambda: get(caddy, branch_name, "/web/login")[0] == 200, timeout=5)
    app.build = build


def age(app, build_id: int, minutes: float) -> None:
    """The build was last used `minutes` ago."""
    with app.db.transaction() as conn:
        conn.execute("UPDATE builds SET last_used_at = now() - make_interval(mins => %s) "
                     "WHERE id = %s", (minutes, build_id))


def state_of(app, build_id: int) -> dict:
    with app.db.transaction() as conn:
        return builds_store.get_build(conn, build_id)


def servers(app, build_id: int) -> list:
    return app.svc.docker.find(build_id=build_id, role="server")


def fall_asleep(app, caddy, branch: str) -> dict:
    """A development build of `branch`, pushed, visited, then left idle until it sleeps."""
    app.work.commit("v1", f"the branch {branch}")
    build = app.work.push(branch)
    assert build["state"] == "running", build["reason"]
    host = layout.build_host(app.config, "shop", branch, build["id"])
    assert visit(caddy, host, "/web/login")[0] == 200
    time.sleep(2)  # that visit written down by the sleep checks first
    age(app, build["id"], 5)
    asleep = wait_for(lambda: (b := state_of(app, build["id"]))["asleep"]
                      and b["state"] == "stopped" and b, timeout=20)
    assert asleep, state_of(app, build["id"])
    time.sleep(0.5)  # Caddy has its wake-up route
    return asleep


def test_an_idle_development_build_sleeps_and_a_visit_wakes_it_and_is_served(app, caddy):
    build = fall_asleep(app, caddy, "feature")
    # Asleep, its server container is kept, stopped: waking it is a `docker start`.
    [kept] = servers(app, build["id"])
    assert kept.status == "exited" and not kept.running
    host = layout.build_host(app.config, "shop", "feature", build["id"])
    # The visit waits for the build, then is sent to the same address, now served.
    status, headers, _ = get(caddy, host, "/web/login?a=1")
    assert status == 307 and headers["location"] == "/web/login?a=1"
    assert visit(caddy, host, "/web/login?a=1")[0] == 200
    woken = state_of(app, build["id"])
    assert woken["state"] == "running" and not woken["asleep"]
    [again] = servers(app, build["id"])
    assert again.id == kept.id and again.running
    assert woken["host_port"] == again.host_port  # read again: Docker may change it


def test_a_sleeping_build_keeps_its_stopped_container_across_a_daemon_restart_until_dropped(
        app, caddy):
    from appliance.jobs import gc
    build = fall_asleep(app, caddy, "nap")
    [kept] = servers(app, build["id"])
    app.svc.docker.start_again(kept.id)  # started behind the appliance's back
    app.stop()
    app.start()  # reconcile: a sleeping build's server is expected, and stopped
    [after] = servers(app, build["id"])
    assert after.id == kept.id and not after.running
    assert state_of(app, build["id"])["asleep"]
    gc.drop(app.svc, state_of(app, build["id"]))
    assert servers(app, build["id"]) == []


def test_a_visit_is_noted_as_a_use_of_the_build_and_production_never_sleeps(app, caddy):
    app.work.commit("v1", "another development branch")
    build = app.work.push("keepawake")
    assert build["state"] == "running", build["reason"]
    host = layout.build_host(app.config, "shop", "keepawake", build["id"])
    before = state_of(app, build["id"])["last_used_at"]
    time.sleep(1)
    assert visit(caddy, host, "/web/login")[0] == 200
    # The sleep checks write the visit down: the build was used just now.
    assert wait_for(lambda: state_of(app, build["id"])["last_used_at"] > before, timeout=10)
    age(app, app.build["id"], 600)  # production, unused for ten hours
    time.sleep(3)  # several sleep checks pass
    assert state_of(app, app.build["id"])["state"] == "running"


def test_a_private_development_build_sends_an_outsider_to_sign_in_and_lets_a_member_in(
        app, caddy):
    app.work.commit("v1", "a private development branch")
    build = app.work.push("private")
    assert build["state"] == "running", build["reason"]
    host = layout.build_host(app.config, "shop", "private", build["id"])
    status, headers, _ = visit(caddy, host, "/web/login", cookie="")
    assert status == 302
    assert headers["location"].endswith(f"/login?next=/builds/{build['id']}")
    assert headers["location"].startswith(f"https://{DOMAIN}:{caddy.https_port}/")
    forged = f"{ACCESS_COOKIE}=" + MEMBER["cookie"].split("=", 1)[1][:-4] + "AAAA"
    assert visit(caddy, host, "/web/login", cookie=forged)[0] == 302
    with app.db.transaction() as conn:
        users_store.create_user(conn, "stranger", "password-stranger", is_admin=False)
        stranger = users_store.user_by_name(conn, "stranger")
    cookie = f"{ACCESS_COOKIE}={build_access.token_for(app.config, stranger)}"
    assert visit(caddy, host, "/web/login", cookie=cookie)[0] == 302  # not a member
    assert visit(caddy, host, "/web/login")[0] == 200  # a member (an appliance admin)


def test_a_public_project_s_development_builds_open_to_anyone(app, caddy):
    with app.db.transaction() as conn:
        build_id = conn.execute("SELECT id FROM builds WHERE state = 'running' AND stage = "
                                "'development' ORDER BY id DESC LIMIT 1").fetchone()["id"]
        build = builds_store.get_build(conn, build_id)
        project = projects_store.get_project(conn, "shop")
        assert visit(caddy, layout.build_host(app.config, "shop", build["branch"], build_id),
                     "/web/login", cookie="")[0] == 302
        projects_store.set_public_access(conn, project, True)
    host = layout.build_host(app.config, "shop", build["branch"], build_id)
    try:
        assert visit(caddy, host, "/web/login", cookie="")[0] == 200
    finally:
        with app.db.transaction() as conn:
            projects_store.set_public_access(conn, project, False)


def test_signing_in_through_the_proxy_sets_the_access_cookie_for_the_base_domain(app, caddy):
    jar = caddy.folder / "jar"
    common = ["curl", "-sS", "--cacert", str(caddy.root_certificate), "-c", str(jar),
              "-b", str(jar), "--resolve", f"{DOMAIN}:{caddy.https_port}:127.0.0.1"]
    base = f"https://{DOMAIN}:{caddy.https_port}"
    page = subprocess.run([*common, f"{base}/login"], capture_output=True, text=True).stdout
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    head = subprocess.run([*common, "-D", "-", "-o", "/dev/null", "--data-urlencode",
                           "name=admin", "--data-urlencode", "password=password-admin",
                           "--data-urlencode", f"csrf_token={token}", f"{base}/login"],
                          capture_output=True, text=True).stdout
    access = [line for line in head.splitlines()
              if line.lower().startswith("set-cookie:") and ACCESS_COOKIE in line]
    assert access, head
    assert f"Domain={DOMAIN}" in access[0] and "Secure" in access[0] and "HttpOnly" in access[0]


def websocket_exchange(caddy, host: str, cookie: str, message: str) -> tuple[str, dict]:
    """Open wss://host/websocket through Caddy, send one text message; (the status line of
    the handshake, the JSON the stand-in Odoo answered)."""
    context = ssl.create_default_context(cafile=str(caddy.root_certificate))
    with socket.create_connection(("127.0.0.1", caddy.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as conn:
            key = base64.b64encode(os.urandom(16)).decode()
            conn.sendall((f"GET /websocket HTTP/1.1\r\nHost: {host}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Cookie: {cookie}\r\n\r\n").encode())
            reader = conn.makefile("rb")
            status = reader.readline().decode().strip()
            head = []
            while (line := reader.readline()) not in (b"\r\n", b""):
                head.append(line.decode().strip())
            if " 101 " not in status + " ":
                return status, {"head": head, "body": reader.read(300).decode(errors="replace")}
            payload, mask = message.encode(), os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            head = reader.read(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(reader.read(2), "big")
            return status, json.loads(reader.read(length))


def test_odoo_s_websocket_connects_through_the_proxy_without_the_access_cookie(app, caddy):
    with app.db.transaction() as conn:
        build = conn.execute("SELECT b.*, br.name AS branch FROM builds b JOIN branches br "
                             "ON br.id = b.branch_id WHERE b.state = 'running' AND "
                             "b.stage = 'development' ORDER BY b.id DESC LIMIT 1").fetchone()
    host = layout.build_host(app.config, "shop", build["branch"], build["id"])
    status, answer = websocket_exchange(caddy, host, f"keep=1; {MEMBER['cookie']}",
                                        '{"event_name": "subscribe"}')
    assert status.split()[1] == "101", (status, answer)
    assert answer["echo"] == '{"event_name": "subscribe"}'
    assert answer["forwarded_proto"] == "https" and answer["forwarded_host"].startswith(host)
    assert "keep=1" in answer["cookie"] and ACCESS_COOKIE not in answer["cookie"]


def test_production_answers_at_its_custom_domains_and_the_others_redirect_to_the_primary(
        app, caddy):
    with app.db.transaction() as conn:
        project = projects_store.get_project(conn, "shop")
        main = projects_store.get_branch(conn, project, "main")
        domains_store.add(conn, project, main, "shop.example.test", DOMAIN)
        domains_store.add(conn, project, main, "example.test", DOMAIN)
    status, _, body = wait_for(
        lambda: (r := visit(caddy, "shop.example.test", "/web/login"))[0] == 200 and r,
        timeout=10) or visit(caddy, "shop.example.test", "/web/login")
    assert status == 200, body[:300]
    status, headers, _ = visit(caddy, "example.test", "/web/login?x=1")
    assert status == 308
    assert headers["location"] == f"https://shop.example.test:{caddy.https_port}/web/login?x=1"
    with app.db.transaction() as conn:
        domains_store.remove(conn, project, "example.test")
    assert wait_for(lambda: get(caddy, "example.test")[0] == 0, timeout=10)


def test_a_stopped_build_answers_a_page_that_leads_to_its_build_page(app, caddy):
    build_name, branch_name = names(app, app.build)
    with app.db.transaction() as conn:
        build = builds_store.get_build(conn, app.build["id"])
    containers.stop_server(app.svc, build, "stopped by the test")
    status, headers, body = wait_for(
        lambda: (r := visit(caddy, build_name))[0] == 503 and r) or visit(caddy, build_name)
    assert status == 503 and "is not running" in body
    assert f"/builds/{build['id']}" in body
    assert visit(caddy, branch_name)[0] == 503
