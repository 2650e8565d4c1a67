"""Caught mail is kept per project within an age and a count, and stored as received."""

from __future__ import annotations

import pytest

from appliance.errors import UserError
from appliance.jobs import mail as mail_jobs
from appliance.runtime.smtp import Caught
from appliance.services import Services
from appliance.store import builds as store_builds
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects


def make_build(conn, project_name: str, stage: str = "development") -> dict:
    project = store_projects.create_project(conn, project_name, "18.0", "appl_")
    branch, _ = store_projects.ensure_branch(conn, project, "feature")
    if stage != "development":
        branch = store_projects.set_stage(conn, branch, stage)
    return store_builds.enqueue(conn, project=project, branch=branch, commit="0" * 40)


def catch(svc, build: dict, count: int) -> list[int]:
    batch = [Caught(sender={"build_id": build["id"], "project_id": build["project_id"]},
                    mail_from="odoo@example.com", rcpt_to=["a@example.org"],
                    raw=f"Subject: mail {i}\r\nFrom: odoo@example.com\r\n\r\nbody\r\n".encode())
             for i in range(count)]
    return mail_jobs.save(svc, batch)


def subjects(conn, build: dict) -> list[str]:
    return [m["subject"] for m in store_mails.list_mails(conn, build_id=build["id"])]


def test_retention_prunes_the_oldest_mail_beyond_the_project_s_count(config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        build = make_build(conn, "shop")
        other = make_build(conn, "other")
        conn.execute("UPDATE projects SET mail_keep_count = 3 WHERE name = 'shop'")
    catch(svc, build, 5)
    catch(svc, other, 5)
    assert mail_jobs.prune(svc) == 2
    with db.transaction() as conn:
        assert subjects(conn, build) == ["mail 4", "mail 3", "mail 2"]
        assert len(subjects(conn, other)) == 5


def test_retention_prunes_mail_older_than_the_project_s_days(config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        build = make_build(conn, "shop")
        conn.execute("UPDATE projects SET mail_keep_days = 7")
    old, recent = catch(svc, build, 2)
    with db.transaction() as conn:
        conn.execute("UPDATE mails SET received_at = now() - interval '8 days' WHERE id = %s",
                     (old,))
    assert mail_jobs.prune(svc) == 1
    with db.transaction() as conn:
        assert [m["id"] for m in store_mails.list_mails(conn, build_id=build["id"])] == [recent]


def test_a_stored_mail_keeps_its_bytes_and_its_index(config, db):
    svc = Services(config, db)
    raw = ("From: =?utf-8?q?Caf=C3=A9?= <cafe@example.com>\r\nTo: a@example.org\r\n"
           "Cc: b@example.org\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\n"
           "Date: Sun, 22 Nov 2026 13:59:57 -0000\r\nMessage-Id: <1@localhost>\r\n\r\nHi\r\n"
           ).encode()
    with db.transaction() as conn:
        build = make_build(conn, "shop")
    [mail_id] = mail_jobs.save(svc, [Caught(
        sender={"build_id": build["id"], "project_id": build["project_id"]},
        mail_from="bounce@example.com", rcpt_to=["a@example.org", "b@example.org"], raw=raw)])
    with db.transaction() as conn:
        mail = store_mails.get_mail(conn, mail_id)
    assert mail["raw"] == raw and mail["size"] == len(raw)
    assert mail["subject"] == "Résumé" and mail["from_header"] == "Café <cafe@example.com>"
    assert mail["to_header"] == "a@example.org, b@example.org"
    assert mail["message_id"] == "<1@localhost>" and mail["sent_at"].year == 2026
    assert not mail["malformed"]


def test_search_matches_every_word_in_sender_recipients_or_subject(config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        build = make_build(conn, "shop")
    catch(svc, build, 3)
    with db.transaction() as conn:
        assert store_mails.count_mails(conn, build_id=build["id"], search="MAIL 1") == 1
        assert store_mails.count_mails(conn, build_id=build["id"], search="odoo@example") == 3
        assert store_mails.count_mails(conn, build_id=build["id"], search="100%_") == 0


def test_only_development_and_staging_builds_may_log_in_to_the_catcher(config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        dev = make_build(conn, "shop")
        prod = make_build(conn, "live", "production")
    senders = mail_jobs.Senders(svc)
    assert senders(*mail_jobs.credentials(svc, dev["id"])) == \
        {"build_id": dev["id"], "project_id": dev["project_id"]}
    assert senders(*mail_jobs.credentials(svc, prod["id"])) is None
    assert senders(f"build-{dev['id']}", "wrong") is None
    assert senders("admin", mail_jobs.credentials(svc, dev["id"])[1]) is None


def test_a_header_with_a_nul_is_stored_cleaned_and_does_not_fail_its_batch(config, db):
    svc = Services(config, db)
    with db.transaction() as conn:
        build = make_build(conn, "shop")
    sender = {"build_id": build["id"], "project_id": build["project_id"]}
    bad = b"Subject: =?utf-8?q?x=00y?=\r\nFrom: a@example.com\r\n\r\nbody\r\n"
    good = b"Subject: fine\r\n\r\nbody\r\n"
    ids = mail_jobs.save(svc, [Caught(sender, "a\x00@example.com", ["b@example.org"], bad),
                               Caught(sender, "a@example.com", ["b@example.org"], good)])
    with db.transaction() as conn:
        stored = [store_mails.get_mail(conn, mail_id) for mail_id in ids]
    assert [m["subject"] for m in stored] == ["xy", "fine"]
    assert stored[0]["raw"] == bad and stored[0]["mail_from"] == "a@example.com"


def test_mail_settings_out_of_bounds_are_refused_and_change_nothing(db):
    with db.transaction() as conn:
        project = store_projects.create_project(conn, "shop", "18.0", "appl_")
    for fields in ({"mail_keep_days": 99_999_999}, {"mail_keep_count": 0},
                   {"relay_host": "fe80::1%\nadmin_passwd = x"},
                   {"relay_host": "smtp://relay.example.com"}, {"relay_port": 70000},
                   {"relay_password": "a\nb"}):
        with db.transaction() as conn, pytest.raises(UserError):
            store_projects.set_mail_settings(conn, project,
                                             **{"relay_host": "ok.example.com", **fields})
    with db.transaction() as conn:
        again = store_projects.get_project(conn, "shop")
    assert (again["relay_host"], again["mail_keep_days"]) == ("", 30)
    with db.transaction() as conn:
        store_projects.set_mail_settings(conn, project, relay_host="fe80::1",
                                         mail_keep_days=3650)
