"""Mail of real builds: development and staging mail is caught and filed under the build
that sent it; production sends through the project's relay; the catcher refuses what it
must and keeps serving.

Odoo sends with `odoo-bin shell` inside the build's server container, configured only
by the build's odoo.conf, the way a user of the build's shell would. The relay is a
second SMTP server run by the test on the Docker bridge.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from appliance import layout
from appliance.errors import UserError
from appliance.jobs import gc, stages
from appliance.jobs import mail as mail_jobs
from appliance.store import builds as builds_store
from appliance.store import mails as mails_store
from appliance.store import overview
from tests.host import ROOT
from tests.integration.harness import (Appliance, ShopWork, free_port, mails_of, make_repo,
                                       push, send_from_odoo, sql, wait_for_mail)

# The relay of the test, like the catcher, takes logins without TLS.
pytestmark = [pytest.mark.docker,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

RELAY_USER, RELAY_PASSWORD = "relay-user", "relay-secret-pw"


class Relay:
    """An SMTP server playing the project's outgoing relay: it keeps what it receives."""

    def __init__(self, host: str):
        self.received: list = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname=host, port=self.port,
                                     authenticator=self.authenticate, auth_required=True,
                                     auth_require_tls=False)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == RELAY_USER
              and auth_data.password.decode() == RELAY_PASSWORD)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    appliance = Appliance(tmp_path_factory.mktemp("mail"), "mail")
    relay = None
    try:
        relay = Relay(appliance.svc.docker.gateway())
        relay.controller.start()
        appliance.start()
        appliance.token = appliance.make_user("admin")
        appliance.make_project("shop")
        sql(appliance.dbname, """UPDATE projects SET relay_host = %s, relay_port = %s,
                                 relay_security = 'none', relay_user = %s, relay_password = %s
                                 WHERE name = 'shop'""",
            (relay.controller.hostname, relay.port, RELAY_USER, RELAY_PASSWORD))
        appliance.relay = relay
        appliance.host = mail_jobs.endpoint(appliance.svc)[0]
        yield appliance
    finally:
        if relay is not None:
            relay.controller.stop(no_assert=True)
        appliance.close()


@pytest.fixture(scope="module")
def builds(app, tmp_path_factory):
    """Production deployed from the shop (its own database has an active mail server,
    which the test turns off so that the relay of the settings is used), two development
    builds and a staging copy of production."""
    folder = tmp_path_factory.mktemp("work")
    work = ShopWork(app, folder / "shop")
    work.commit("v1")
    production = work.push()
    assert production["state"] == "running", production["reason"]
    sql(production["database"], "UPDATE ir_mail_server SET active = false")
    found = {"production": production}
    for branch in ("feature-a", "feature-b"):
        repo = make_repo(folder / branch, "green")
        _, ids = push(repo, app.remote("shop", "admin", app.token), branch)
        found[branch] = app.wait_build(ids[0])
        assert found[branch]["state"] == "running", found[branch]["reason"]
    work.push("staged")
    with app.db.transaction() as conn:
        project = conn.execute("SELECT * FROM projects WHERE name = 'shop'").fetchone()
    stages.move(app.svc, project, "staged", "staging", None)
    staging = app.wait_build(stages.rebuild(app.svc, project, "staged", None)["id"], 240)
    assert (staging["state"], staging["deploy"]) == ("running", "copy"), staging["reason"]
    found["staging"] = staging
    return found


def login(app, build_id: int) -> smtplib.SMTP:
    client = smtplib.SMTP(app.host, app.mail_port, timeout=30)
    client.login(*mail_jobs.credentials(app.svc, build_id))
    return client


def message(subject: str, **headers) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "odoo@example.com", "someone@example.org", subject
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content("Hello")
    return mail.as_bytes()


def test_mail_a_development_build_sends_lands_in_its_mails_and_no_other_build_s(app, builds):
    a, b = builds["feature-a"], builds["feature-b"]
    send_from_odoo(app, a, "Invoice INV/2026/0001")
    mail = wait_for_mail(app, a["id"], "Invoice INV/2026/0001")
    assert mail["rcpt_to"] == ["customer@example.org"]
    assert mail["from_header"] == "shop@example.com" and not mail["malformed"]
    assert mails_of(app, b["id"]) == []
    assert not app.relay.received


def test_a_development_database_sends_only_to_the_catcher_with_its_own_login(app, builds):
    build = builds["feature-a"]
    servers = sql(build["database"], "SELECT name, smtp_host, smtp_port, smtp_user, active "
                                     "FROM ir_mail_server WHERE active")
    assert servers == [(mail_jobs.CATCHER_SERVER_NAME, app.host, app.mail_port,
                        f"build-{build['id']}", True)]
    conf = (layout.build_dir(app.config, build["id"]) / "odoo.conf").read_text()
    assert f"smtp_user = build-{build['id']}" in conf


def test_a_message_claiming_another_build_is_filed_under_its_real_sender(app, builds):
    a, b = builds["feature-a"], builds["feature-b"]
    with login(app, a["id"]) as client:
        client.sendmail(f"build-{b['id']}@appliance", ["x@example.org"],
                        message("Forged", X_Appliance_Build=str(b["id"]),
                                Sender=f"build-{b['id']}"))
    assert wait_for_mail(app, a["id"], "Forged")["build_id"] == a["id"]
    assert mails_of(app, b["id"]) == []
    with smtplib.SMTP(app.host, app.mail_port, timeout=30) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(f"build-{b['id']}", mail_jobs.credentials(app.svc, a["id"])[1])
    assert refused.value.smtp_code == 535


def test_strangers_and_production_get_no_login_to_the_catcher(app, builds):
    with smtplib.SMTP(app.host, app.mail_port, timeout=30) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.org"], message("No login"))
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(*mail_jobs.credentials(app.svc, builds["production"]["id"]))


def test_oversized_mail_and_too_many_recipients_are_refused_and_the_catcher_keeps_serving(
        app, builds):
    build = builds["feature-b"]
    with login(app, build["id"]) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
            client.sendmail("a@example.com", ["b@example.org"],
                            message("Big") + b"x" * (app.config.mail.max_message_bytes + 10))
        assert too_big.value.smtp_code == 552
    with login(app, build["id"]) as client:
        recipients = [f"r{i}@example.org" for i in range(app.config.mail.max_recipients + 5)]
        refused = client.sendmail("a@example.com", recipients, message("Many"))
        assert set(refused) == set(recipients[app.config.mail.max_recipients:])
        assert {code for code, _ in refused.values()} == {452}
        client.sendmail("a@example.com", ["b@example.org"], message("Still serving"))
    assert len(wait_for_mail(app, build["id"], "Many")["rcpt_to"]) == \
        app.config.mail.max_recipients
    wait_for_mail(app, build["id"], "Still serving")


def test_garbage_bytes_are_kept_raw_and_marked_malformed(app, builds):
    build = builds["feature-b"]
    garbage = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") * 3 + b"\r\n"
    with login(app, build["id"]) as client:
        client.sendmail("a@example.com", ["b@example.org"], garbage)
    deadline = time.monotonic() + 10
    while not [m for m in mails_of(app, build["id"]) if m["malformed"]]:
        assert time.monotonic() < deadline, "the garbage was not stored"
        time.sleep(0.2)
    mail = [m for m in mails_of(app, build["id"]) if m["malformed"]][0]
    with app.db.transaction() as conn:
        assert mails_store.get_mail(conn, mail["id"])["raw"] == garbage


def test_a_neutralized_staging_copy_sends_to_the_catcher_not_to_real_servers(app, builds):
    staging = builds["staging"]
    servers = sql(staging["database"],
                  "SELECT name, smtp_host, active FROM ir_mail_server ORDER BY id")
    active = [row for row in servers if row[2]]
    assert active == [(mail_jobs.CATCHER_SERVER_NAME, app.host, True)]
    assert ("neutralization - disable emails", "invalid", False) in servers
    assert any(host == "smtp.example.com" and not on for _, host, on in servers)
    before = len(app.relay.received)
    send_from_odoo(app, staging, "Reminder from staging")
    assert wait_for_mail(app, staging["id"], "Reminder from staging")["build_id"] == \
        staging["id"]
    assert len(app.relay.received) == before


def test_production_sends_through_the_project_relay_and_nothing_is_caught(app, builds):
    production = builds["production"]
    send_from_odoo(app, production, "Real invoice")
    deadline = time.monotonic() + 30
    while not [e for e in app.relay.received if b"Real invoice" in e.original_content]:
        assert time.monotonic() < deadline, "the relay received nothing"
        time.sleep(0.2)
    assert RELAY_USER in app.relay.logins
    assert mails_of(app, production["id"]) == []
    conf = (layout.build_dir(app.config, production["id"]) / "odoo.conf").read_text()
    assert f"smtp_server = {app.relay.controller.hostname}" in conf
    log = (app.folder / "daemon.log").read_text()
    assert RELAY_PASSWORD not in log


def test_releasing_a_caught_mail_sends_it_as_caught_to_the_typed_address_only(app, builds):
    build = builds["feature-a"]
    with login(app, build["id"]) as client:
        client.sendmail("a@example.com", ["customer@example.org"], message("To release"))
    mail = wait_for_mail(app, build["id"], "To release")
    with app.db.transaction() as conn:
        user = conn.execute("SELECT * FROM users WHERE name = 'admin'").fetchone()
    before = len(app.relay.received)
    with pytest.raises(UserError):
        mail_jobs.release(app.svc, mail["id"], "qa@example.net, boss@example.com", user)
    assert len(app.relay.received) == before
    mail_jobs.release(app.svc, mail["id"], "qa@example.net", user)
    sent = app.relay.received[-1]
    assert sent.rcpt_tos == ["qa@example.net"]
    with app.db.transaction() as conn:
        assert sent.original_content.replace(b"\r\n", b"\n") == \
            mails_store.get_mail(conn, mail["id"])["raw"].replace(b"\r\n", b"\n")
        events = overview.branch_history(conn, build["branch_id"])
    assert any(e["kind"] == "mail_released" and "qa@example.net" in e["message"]
               and e["build_id"] == build["id"] for e in events)


def test_collecting_a_build_deletes_its_caught_mail(app, builds):
    build = builds["feature-b"]
    assert mails_of(app, build["id"])
    with app.db.transaction() as conn:
        row = builds_store.get_build(conn, build["id"])
    gc.drop(app.svc, row)
    assert mails_of(app, build["id"]) == []


def test_the_cli_lists_a_build_s_mails_as_json_and_shows_one(app, builds):
    build = builds["feature-a"]
    mail = wait_for_mail(app, build["id"], "Invoice INV/2026/0001")
    listed = cli(app, "mail", "list", str(build["id"]), "--json")
    assert json.loads(listed.stdout)[-1]["subject"] == "Invoice INV/2026/0001"
    assert all(m["build"] == build["id"] for m in json.loads(listed.stdout))
    shown = cli(app, "mail", "show", str(mail["id"]))
    assert "Subject: Invoice INV/2026/0001" in shown.stdout and "Your invoice" in shown.stdout
    raw = cli(app, "mail", "show", str(mail["id"]), "--raw", text=False)
    with app.db.transaction() as conn:
        assert raw.stdout == mails_store.get_mail(conn, mail["id"])["raw"]


def cli(app, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "--config",
                             str(app.config_path), *args], cwd=ROOT, capture_output=True,
                            text=text, timeout=60)
    assert result.returncode == 0, result.stderr
    return result
