"""Hostile requests against signing in and sessions: the real app, the real state database.

What an attacker tries: a `next` that leads off-site after login, guessing passwords as
fast as the server answers, a stolen cookie replayed after its owner signed out or changed
the password, a cookie signed with a key of their own. The app runs without TESTING, so a
crash shows as the 500 a browser would get, not as an exception in the test.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from appliance.store import users as store_users
from appliance.web.app import create_app
from tests.client_cookies import get_cookie, set_cookie
from tests.helpers_web import PASSWORD
from tests.host import ROOT, STATE_DIR

NEW_PASSWORD = "battery staple"
ATTACKER = "203.0.113.66"
ELSEWHERE = "198.51.100.7"
PROTECTED = "/projects/acme"

# `next` values seen leading browsers off-site or crashing login pages.
HOSTILE_NEXT = [
    "/%09/evil.example/", "/%0a/x", "/%0d/evil.example/", "/%00/evil.example/",
    "//evil.example/", "///evil.example/", "/\\evil.example/", "\\\\evil.example/",
    "/%5cevil.example/", "%2f%2fevil.example/", "https://evil.example/",
    "javascript:alert(1)", "evil.example", " //evil.example/", "/\t/evil.example/",
    "/\n/evil.example/", "/\r\n/evil.example/", "/\u2028/evil.example",
    "data:text/html,<script>alert(1)</script>", "http:/evil.example/",
]


@pytest.fixture
def app(config, db):
    """The app as a browser meets it: not TESTING, so a crash answers 500. The people
    (owner of `acme`, outsider, ...) are those of tests/conftest.py."""
    return create_app(config, db)


def client_from(app, address: str = ATTACKER):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def csrf(client) -> str:
    client.get("/login")
    with client.session_transaction() as session:
        return session["csrf"]


def login(client, name: str, password: str = PASSWORD, **extra):
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf_token": csrf(client), **extra})


def session_cookie(client) -> str:
    value = get_cookie(client, "appliance_session")
    assert value is not None, "no session cookie"
    return value


def with_cookie(app, value: str):
    client = client_from(app, ELSEWHERE)
    set_cookie(client, "appliance_session", value)
    return client


def is_signed_in(client) -> bool:
    response = client.get("/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


def stays_on_site(location: str) -> bool:
    """What a browser makes of the Location: tabs and newlines dropped, backslashes
    read as slashes, leading blanks ignored; it must be a path of this site."""
    seen = location.strip("".join(map(chr, range(0x21))))
    seen = "".join(c for c in seen if c not in "\t\n\r").replace("\\", "/")
    parts = urlsplit(seen)
    return (not parts.scheme and not parts.netloc and seen.startswith("/")
            and not seen.startswith("//"))


# next: after signing in, only a path of this site

def test_login_redirect_stays_on_this_site_for_hostile_next_values(app, people):
    wrong = {}
    for target in HOSTILE_NEXT:
        client = client_from(app)
        page = client.get("/login", query_string={"next": target})
        response = login(client, "owner", next=target)
        location = response.headers.get("Location", "")
        if response.status_code == 302 and not stays_on_site(location):
            wrong[target] = ("OFF-SITE", location)
        elif page.status_code != 200 or response.status_code != 302 or location != "/":
            wrong[target] = (page.status_code, response.status_code, location)
    assert not wrong, f"not sent to the projects page: {wrong}"


def test_a_raw_hostile_next_in_the_login_url_never_makes_a_server_error(app, people):
    wrong = {}
    for raw in ("next=/%09/evil.example/", "next=/%0a/x", "next=/%0d%0aSet-Cookie:x=1",
                "next=%2F%5Cevil.example", "next=/%00", "next=/%7f/x"):
        client = client_from(app)
        page = client.get("/login?" + raw)
        token = csrf(client)
        response = client.post("/login?" + raw, data=f"name=owner&password=correct+horse&"
                               f"csrf_token={token}&{raw}",
                               content_type="application/x-www-form-urlencoded")
        if (page.status_code, response.status_code, response.headers.get("Location")) != (
                200, 302, "/"):
            wrong[raw] = (page.status_code, response.status_code, response.headers.get("Location"))
    assert not wrong, f"not sent to the projects page: {wrong}"
    # A path of this site is still honoured.
    response = login(client_from(app), "owner", next="/projects/acme?tab=builds")
    assert response.headers["Location"] == "/projects/acme?tab=builds"


# Throttling failed sign-ins

def fail(client, name: str = "owner", times: int = 1, headers: dict | None = None):
    for _ in range(times):
        response = client.post("/login", headers=headers or {},
                               data={"name": name, "password": "wrong password",
                                     "csrf_token": csrf(client)})
        assert response.status_code == 200, response.status_code
        assert "Wrong name or password." in response.get_data(as_text=True)


@pytest.fixture
def password_checks(monkeypatch):
    """How many times a password was checked against its hash."""
    calls = []
    real = store_users.check_password_hash

    def counting(pwhash, password):
        calls.append(1)
        return real(pwhash, password)
    monkeypatch.setattr(store_users, "check_password_hash", counting)
    return calls


def test_after_five_failures_an_account_is_refused_even_the_right_password(
        app, people, password_checks, caplog):
    caplog.set_level(logging.INFO)
    fail(client_from(app), times=5)
    checked = len(password_checks)
    response = login(client_from(app, ELSEWHERE), "owner", PASSWORD)
    assert response.status_code == 429
    body = response.get_data(as_text=True)
    assert "Too many failed sign-ins" in body and "try again" in body.lower()
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert len(password_checks) == checked, "a throttled attempt checked the password"
    assert not is_signed_in(client_from(app, ELSEWHERE))
    assert any("throttled" in r.getMessage() for r in caplog.records)
    assert not any(PASSWORD in r.getMessage() or "wrong password" in r.getMessage()
                   for r in caplog.records), "a password was logged"
    # Another account is not locked by this one's failures (from a fresh address).
    assert login(client_from(app, "192.0.2.1"), "outsider").status_code == 302


def test_after_five_failures_from_an_address_every_account_is_refused_from_it(app, people):
    client = client_from(app)
    for name in ("ghost1", "ghost2", "ghost3", "ghost4", "ghost5"):
        fail(client, name)
    response = login(client_from(app), "outsider", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    # The accounts themselves are not locked: from another address they sign in.
    assert login(client_from(app, ELSEWHERE), "outsider").status_code == 302


def test_a_spoofed_forwarded_for_header_does_not_escape_the_address_throttle(app, people):
    client = client_from(app)
    for number in range(5):
        fail(client, f"ghost{number}", headers={"X-Forwarded-For": f"10.0.0.{number}"})
    response = client.post("/login", headers={"X-Forwarded-For": "10.9.9.9"},
                           data={"name": "outsider", "password": PASSWORD,
                                 "csrf_token": csrf(client)})
    assert response.status_code == 429


def test_behind_a_local_proxy_each_forwarded_client_is_throttled_on_its_own(app, people):
    proxy = client_from(app, "127.0.0.1")
    for number in range(5):
        fail(proxy, f"ghost{number}", headers={"X-Forwarded-For": f"10.0.0.1, {ATTACKER}"})
    attacker = proxy.post("/login", headers={"X-Forwarded-For": ATTACKER},
                          data={"name": "outsider", "password": PASSWORD, "csrf_token": csrf(proxy)})
    assert attacker.status_code == 429
    colleague = client_from(app, "127.0.0.1")
    response = colleague.post("/login", headers={"X-Forwarded-For": ELSEWHERE},
                              data={"name": "outsider", "password": PASSWORD,
                                    "csrf_token": csrf(colleague)})
    assert response.status_code == 302


def test_the_lock_grows_with_each_failure_past_it_and_ends(app, people, db):
    client = client_from(app)
    fail(client, times=5)
    first = int(login(client, "owner").headers["Retry-After"])
    expire_locks(db)
    fail(client)  # the sixth failure: the lock doubles
    second = int(login(client, "owner").headers["Retry-After"])
    assert second > first * 1.5, (first, second)
    expire_locks(db)
    assert login(client, "owner").status_code == 302


def test_a_successful_sign_in_clears_the_account_s_count(app, people):
    fail(client_from(app, "192.0.2.10"), times=4)
    assert login(client_from(app, "192.0.2.11"), "owner").status_code == 302
    fail(client_from(app, "192.0.2.12"), times=4)
    assert login(client_from(app, "192.0.2.13"), "owner").status_code == 302
    # Counting starts again from nothing: five more failures, and the account is locked.
    fail(client_from(app, "192.0.2.14"), times=5)
    assert login(client_from(app, "192.0.2.15"), "owner").status_code == 429


def test_the_throttle_survives_a_new_app_on_the_same_database(config, db, people):
    fail(client_from(create_app(config, db)), times=5)
    fresh = create_app(config, db)  # a restarted daemon, or another waitress thread
    assert login(client_from(fresh, ELSEWHERE), "owner").status_code == 429


@pytest.fixture
def served(app):
    """The app under waitress, as the daemon serves it: several request threads."""
    from waitress import create_server
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, name="waitress-test", daemon=True).start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def test_guesses_sent_all_at_once_get_no_more_than_five_checks(served, people, password_checks):
    def guess(number: int) -> int:
        with requests.Session() as browser:
            page = browser.get(served + "/login", timeout=30).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            return browser.post(served + "/login", timeout=60, allow_redirects=False, data={
                "name": "owner", "password": f"guess {number}", "csrf_token": token}).status_code
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = sorted(pool.map(guess, range(12)))
    assert answers == [200] * 5 + [429] * 7, answers
    assert len(password_checks) == 5


def expire_locks(db) -> None:
    """Move time on past every lock, without waiting."""
    with db.transaction() as conn:
        conn.execute("UPDATE login_throttle SET locked_until = now() - interval '1 second'"
                     " WHERE locked_until IS NOT NULL")


# Sessions that end on the server

def signed_in_client(app, name: str = "owner"):
    client = client_from(app, ELSEWHERE)
    assert login(client, name).status_code == 302
    assert is_signed_in(client)
    return client


def test_the_old_cookie_is_refused_after_logout(app, people):
    client = signed_in_client(app)
    stolen = session_cookie(client)
    assert client.post("/logout", data={"csrf_token": csrf_of(client)}).status_code == 302
    assert not is_signed_in(with_cookie(app, stolen))


def test_logout_ends_the_account_s_other_sessions_too(app, people):
    laptop, phone = signed_in_client(app), signed_in_client(app)
    laptop.post("/logout", data={"csrf_token": csrf_of(laptop)})
    assert not is_signed_in(phone)


def test_a_cookie_is_refused_after_a_password_change(app, people, db):
    client, bystander = signed_in_client(app), signed_in_client(app, "outsider")
    with db.transaction() as conn:
        store_users.set_password(conn, "owner", NEW_PASSWORD)
    assert not is_signed_in(client)
    assert bystander.get("/").status_code == 200  # another account's sessions go on
    assert login(client_from(app, ELSEWHERE), "owner", NEW_PASSWORD).status_code == 302


def test_a_password_changed_on_the_command_line_ends_the_sessions(app, people, config, tmp_path):
    client = signed_in_client(app)
    config_file = tmp_path / "appliance.toml"
    config_file.write_text(f"""
[server]
secret_key = "test-secret-key"
[paths]
data_dir = "{tmp_path / 'data'}"
[database]
dsn = "{config.database.dsn}"
password_file = "{STATE_DIR / 'db-password'}"
""")
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config_file), "user", "password",
         "owner", "--password-stdin"], input=NEW_PASSWORD + "\n", capture_output=True, text=True,
        cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert NEW_PASSWORD not in done.stdout + done.stderr
    assert not is_signed_in(client)
    assert login(client_from(app, ELSEWHERE), "owner", NEW_PASSWORD).status_code == 302


def forged_cookie(app, key: str, **session) -> str:
    """A session cookie as Flask makes them, signed with `key`."""
    forger = Flask("forger")
    forger.secret_key = key
    return SecureCookieSessionInterface().get_signing_serializer(forger).dumps(session)


def test_a_cookie_signed_with_another_key_is_refused(app, people):
    owner = people["owner"]
    for key in ("secret", "appliance", "changeme", "test-secret-keyx"):
        cookie = forged_cookie(app, key, user_id=owner["id"], csrf="t",
                               generation=owner.get("session_generation", 1))
        assert not is_signed_in(with_cookie(app, cookie)), key


def test_a_cookie_with_the_right_key_but_no_session_generation_is_refused(app, people, config):
    """Cookies made before sessions could be ended (or by anyone who only knows the id)."""
    cookie = forged_cookie(app, config.server.secret_key, user_id=people["owner"]["id"])
    assert not is_signed_in(with_cookie(app, cookie))


def csrf_of(client) -> str:
    with client.session_transaction() as session:
        return session["csrf"]


# HTTPS

def test_https_public_url_gives_secure_cookies_and_hsts(config, db, people):
    config.server.public_url = "https://appliance.example.com"
    client = client_from(create_app(config, db))
    response = login(client, "owner")
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies), cookies
    for path in ("/login", "/-/health", PROTECTED):
        hsts = client.get(path).headers.get("Strict-Transport-Security", "")
        assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 15552000
    # Over plain HTTP neither: a browser would refuse the appliance until the header expires.
    config.server.public_url = "http://appliance.example.com"
    plain = client_from(create_app(config, db))
    assert "Secure" not in login(plain, "owner").headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in plain.get("/login").headers
