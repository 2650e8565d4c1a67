"""The name a backup's download is saved under, through Flask's test client against a
real state database: a branch name may hold what git allows (quotes, Unicode), and the
Content-Disposition header, parsed, still gives that name, with a plain
ASCII one beside it. The backup's bytes are a stand-in stream (no restic here).
"""

from __future__ import annotations

import re

import pytest
from werkzeug.http import parse_options_header

from appliance.jobs import backup_export
from appliance.store import backups as backups_store
from appliance.store import projects as store_projects


@pytest.fixture
def stand_in_stream(monkeypatch):
    def stream(svc, backup):
        yield b"PK\x03\x04" + b"x" * 100
    monkeypatch.setattr(backup_export, "zip_stream", stream)


def backup_of(db, build: dict) -> dict:
    with db.transaction() as conn:
        project = store_projects.project_by_id(conn, build["project_id"])
        branch = conn.execute("SELECT * FROM branches WHERE id = %s",
                              (build["branch_id"],)).fetchone()
        row = backups_store.start(conn, project=project, branch=branch, build=build,
                                  kind="manual")
        return backups_store.finish(conn, row["id"], "done", seconds=1.0, dump_bytes=10,
                                    files_bytes=10, bytes_added=10, dump_snapshot="d" * 8,
                                    files_snapshot="f" * 8)


def saved_as(header: str) -> tuple[str, str]:
    """(the name a browser saves the file under, the plain filename beside it), read by
    Werkzeug's parser: of filename and filename*, the one that comes last wins there, and
    filename* always does in browsers (RFC 6266)."""
    _, params = parse_options_header(header)
    _, plain = parse_options_header(re.sub(r";\s*filename\*=[^;]*", "", header))
    return params["filename"], plain["filename"]


@pytest.mark.parametrize("branch", ['a"b', "café;x=1", "bug\\fix"])
def test_a_download_is_named_after_its_branch_whatever_the_branch_s_name_holds(
        client_as, make_build, db, stand_in_stream, branch):
    row = backup_of(db, make_build(branch, state="running"))
    answer = client_as("owner").get(f"/backups/{row['id']}/download")
    assert answer.status_code == 200 and answer.data.startswith(b"PK")
    header = answer.headers["Content-Disposition"]
    assert header.isascii() and header.startswith("attachment;")
    exact, plain = saved_as(header)
    stamp = f"{row['started_at']:%Y%m%d-%H%M}-{row['id']}.zip"
    assert exact == f"acme-{branch}-{stamp}"
    assert plain == "acme-" + "".join(c if c.isalnum() and c.isascii() else "_"
                                      for c in branch) + f"-{stamp}"
