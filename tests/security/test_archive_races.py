"""Archiving a project while a push is under way.

receive-pack asks the pre-receive check (the project is not archived yet), writes the
refs, then asks post-receive to queue the builds. An appliance admin archiving the
project in between (its check found nothing queued) must not find a build queued behind
it afterwards, whose server would then run in an archived project: post-receive reads
the project again, waiting for an archive under way to end, and queues nothing in an
archived project.
"""

from __future__ import annotations

from appliance.jobs import push
from appliance.store import projects as store_projects
from tests.helpers_web import Work


def test_a_push_whose_project_was_archived_since_its_check_queues_no_build(
        config, db, people, tmp_path):
    work = Work(config, db, people["project"], tmp_path / "work")
    head = work.commit("Add the shop", {"shop/models.py": "price = 1\n"})
    updates = f"{'0' * 40} {head} refs/heads/main\n"
    with db.transaction() as conn:  # pre-receive, before the archive
        checked = store_projects.get_project(conn, "acme")
        assert push.check(checked, updates, conn, people["owner"]) == []
    with db.transaction() as conn:  # the admin archives it now
        conn.execute("UPDATE projects SET archived_at = now() WHERE id = %s", (checked["id"],))
    with db.transaction() as conn:  # post-receive, with the project as it was read
        lines = push.received(conn, config, checked, people["owner"], updates)
    assert any("archived" in line for line in lines), lines
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"] == 0
