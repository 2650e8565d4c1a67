"""The Backups tab in a real browser (Debian's Chromium): a .sql.gz goes up in pieces with
a progress bar that reaches 100 %, then the import is asked for and the page goes to its
build; a restore is confirmed on a page that names the branch it replaces.

The import and the restore themselves (jobs/restores.py) are replaced here by stand-ins
that record what they were asked and answer a queued build: their work has its own tests.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.jobs import restores
from appliance.store import backups as backups_store
from appliance.store import projects as store_projects
from tests.browser.helpers import LIVE_TIMEOUT_MS, expect

pytestmark = pytest.mark.browser

# Records the progress bar's highest value where the next page can still read it.
WATCH_PROGRESS = """() => {
  const bar = document.getElementById('upload-progress');
  new MutationObserver(() => {
    const seen = Number(sessionStorage.getItem('progress') || 0);
    sessionStorage.setItem('progress', Math.max(seen, Number(bar.value)));
  }).observe(bar, {attributes: true});
}"""


@pytest.fixture
def staging(make_build, db, people, build):
    """acme's staging branch `qa`, with a build (what the stand-ins answer)."""
    qa_build = make_build("qa", commit="a" * 40, message="QA", state="running")
    with db.transaction() as conn:
        qa = store_projects.get_branch(conn, people["project"], "qa")
        store_projects.set_stage(conn, qa, "staging")
    return qa_build


@pytest.fixture
def asked(monkeypatch, staging):
    """What the stand-ins of request_import and request_restore were asked."""
    calls = []

    def request_import(svc, project, path, name, branch_name, user, remove_after=False):
        calls.append({"what": "import", "sha256": hashlib.sha256(Path(path).read_bytes())
                      .hexdigest(), "name": name, "branch": branch_name,
                      "remove_after": remove_after})
        return staging

    def request_restore(svc, project, backup_id, branch_name, user):
        calls.append({"what": "restore", "backup": backup_id, "branch": branch_name})
        return staging

    monkeypatch.setattr(restores, "request_import", request_import)
    monkeypatch.setattr(restores, "request_restore", request_restore)
    return calls


def test_a_sql_gz_goes_up_in_pieces_to_100_percent_then_to_its_import_build(
        page, base_url, config, staging, asked, tmp_path):
    config.backup.upload_chunk_bytes = 16 * 1024
    dump = tmp_path / "acme.sql.gz"
    dump.write_bytes(gzip.compress(b"-- PostgreSQL database dump\n" + os.urandom(60_000),
                                   compresslevel=0))
    pieces = []
    page.on("request", lambda r: pieces.append(r.url) if "/chunks?offset=" in r.url else None)
    page.goto(f"{base_url}/projects/acme/backups/main")
    page.evaluate(WATCH_PROGRESS)
    page.set_input_files("#upload-file", str(dump))
    page.select_option("#upload-branch", "qa")
    page.click("#upload-start")

    expect(page).to_have_url(re.compile(rf"/builds/{staging['id']}$"), timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("sessionStorage.getItem('progress')") == "100"
    assert len(pieces) == -(-dump.stat().st_size // (16 * 1024)) >= 4
    assert asked == [{"what": "import", "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(),
                      "name": "acme.sql.gz", "branch": "qa", "remove_after": True}]
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('upload:'))") == []


def test_a_restore_is_confirmed_on_a_page_naming_the_target_branch(page, base_url, db,
                                                                   build, staging, asked):
    with db.transaction() as conn:
        project = store_projects.project_by_id(conn, build["project_id"])
        main = store_projects.get_branch(conn, project, "main")
        row = backups_store.start(conn, project=project, branch=main, build=build,
                                  kind="daily", started_at=datetime.now(timezone.utc)
                                  - timedelta(hours=3))
        backups_store.finish(conn, row["id"], "done", seconds=2.0, dump_bytes=1000,
                             files_bytes=2000, bytes_added=3000, dump_snapshot="d" * 8,
                             files_snapshot="f" * 8)
    page.goto(f"{base_url}/projects/acme/backups/main")
    page.click(f'tr[data-backup="{row["id"]}"] a.restore')
    expect(page.locator("#restore-question .target-branch")).to_have_text("main")
    expect(page.locator("#restore-question")).to_contain_text("(production)")
    page.select_option("#restore-branch", "qa")
    page.click("#restore-choose")
    expect(page.locator("#restore-question .target-branch")).to_have_text("qa")
    expect(page.locator("#restore-confirm")).to_have_text("Restore into qa")
    page.click("#restore-confirm")
    expect(page).to_have_url(re.compile(rf"/builds/{staging['id']}$"))
    assert asked == [{"what": "restore", "backup": row["id"], "branch": "qa"}]
