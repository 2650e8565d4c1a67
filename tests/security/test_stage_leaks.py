"""A member reads, through the JSON twins, only what their role may read on each stage.

Staging is a copy of production's data: the mail its builds send names real customers.
A developer (no "mails" on staging by default) who asks the project's mail list for
everything, or names a staging branch, gets none of it, as the branch's Mails tab
already refuses them; a tester (who may) gets it.
"""

from __future__ import annotations

from email.message import EmailMessage

from appliance import mime
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects
from appliance.store import users as store_users


def _raw(subject: str) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "odoo@acme.example", "c@example.com", subject
    mail.set_content("Dear customer")
    return mail.as_bytes()


def _catch(db, build: dict, subject: str) -> None:
    raw = _raw(subject)
    with db.transaction() as conn:
        store_mails.add_mails(conn, [{"project_id": build["project_id"], "build_id": build["id"],
                                      "mail_from": "odoo@acme.example",
                                      "rcpt_to": ["c@example.com"], "size": len(raw),
                                      "raw": raw, **mime.summary(raw)}])


def _staging_and_development(db, people, make_build) -> None:
    with db.transaction() as conn:
        branch, _ = store_projects.ensure_branch(conn, people["project"], "qa")
        conn.execute("UPDATE branches SET stage = 'staging' WHERE id = %s", (branch["id"],))
    _catch(db, make_build("qa"), "Invoice for Mrs Real Customer")
    _catch(db, make_build("feature"), "Demo invoice")


def _subjects(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(row["subject"] for row in response.get_json())


def test_a_developer_listing_the_project_s_mail_gets_none_of_staging_s(
        db, people, make_build, client_as):
    _staging_and_development(db, people, make_build)
    member = client_as("member")  # a developer: mails on development only
    assert _subjects(member.get("/api/projects/acme/mails")) == ["Demo invoice"]
    asked = member.get("/api/projects/acme/mails?branch=qa")
    assert asked.status_code == 403 and b"Real Customer" not in asked.data


def test_a_tester_and_a_project_admin_list_staging_s_mail(db, people, make_build, client_as):
    _staging_and_development(db, people, make_build)
    with db.transaction() as conn:
        tester = store_users.create_user(conn, "tess", "correct horse")
        store_users.add_member(conn, people["project"]["id"], tester["id"], "tester")
    both = ["Demo invoice", "Invoice for Mrs Real Customer"]
    assert _subjects(client_as("tess").get("/api/projects/acme/mails")) == both
    assert _subjects(client_as("owner").get("/api/projects/acme/mails")) == both
    assert _subjects(client_as("owner").get("/api/projects/acme/mails?branch=qa")) == \
        ["Invoice for Mrs Real Customer"]
