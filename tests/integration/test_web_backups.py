"""The Backups tab and chunked uploads through Flask's test client against a real state
database: who sees what (owner, member, outsider), CSRF, "Back up now" queuing a task,
pieces at the right offset only, the size cap, resuming after a dropped connection, the
restore confirmation, the chart, and the project page's red notice. The last tests use a
real production (the stand-in Odoo in Docker, a daemon whose task pool makes the backup)
and read downloads through a real server.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import stat
import threading
import time
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from appliance.jobs import backup as backup_jobs
from appliance.jobs import backup_export
from appliance.jobs import uploads as upload_jobs
from appliance.services import Services
from appliance.store import backups as backups_store
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.web.app import create_app
from tests.client_cookies import get_cookie
from tests.helpers_web import PASSWORD, csrf, flashes, login, post
from tests.integration.harness import Appliance, make_repo, odoo_shell, push

TAB = "/projects/acme/backups/main"
UPLOADS = "/projects/acme/uploads"


@pytest.fixture
def branches(make_build, db, people):
    """acme's `main` (production), `qa` (staging) and `feature` (development)."""
    builds = {name: make_build(name, state="running") for name in ("main", "qa", "feature")}
    with db.transaction() as conn:
        qa = store_projects.get_branch(conn, people["project"], "qa")
        store_projects.set_stage(conn, qa, "staging")
    return builds


def add_backup(db, build: dict, days_ago: float, dump: int, files: int, added: int,
               state: str = "done") -> dict:
    """A backup row as a finished backup leaves it (no snapshots behind it)."""
    with db.transaction() as conn:
        project = store_projects.project_by_id(conn, build["project_id"])
        branch = conn.execute("SELECT * FROM branches WHERE id = %s",
                              (build["branch_id"],)).fetchone()
        row = backups_store.start(conn, project=project, branch=branch, build=build,
                                  kind="manual", started_at=datetime.now(timezone.utc)
                                  - timedelta(days=days_ago))
        return backups_store.finish(conn, row["id"], state, seconds=3.5, dump_bytes=dump,
                                    files_bytes=files, bytes_added=added,
                                    dump_snapshot="d" * 8, files_snapshot="f" * 8,
                                    error="" if state == "done" else "pg_dump failed")


def tasks(db) -> list[dict]:
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()


def start_upload(client, size: int, name: str = "acme.sql.gz", **extra):
    return client.post(UPLOADS, json={"name": name, "size": size, **extra},
                       headers={"X-CSRF-Token": csrf(client)})


def send(client, upload: dict, offset: int, data: bytes, **kwargs):
    return client.post(f"{UPLOADS}/{upload['id']}/chunks?offset={offset}", data=data,
                       content_type="application/octet-stream",
                       headers={"X-CSRF-Token": csrf(client)}, **kwargs)


def status(client, upload: dict):
    return client.get(f"{UPLOADS}/{upload['id']}")


# -- the tab ---------------------------------------------------------------------------

def test_the_backups_tab_is_for_those_who_may_download_backups(app, client_as, branches):
    anonymous = app.test_client().get(TAB)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert client_as("outsider").get(TAB).status_code == 404
    assert client_as("member").get(TAB).status_code == 403  # a developer, on production
    page = client_as("owner").get(TAB)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Back up now" in text and "No backup of main yet" in text
    assert 'id="upload-form"' in text and "uploads.js" in text


def test_a_development_branch_has_no_backups_tab(client_as, branches):
    client = client_as("owner")
    assert client.get("/projects/acme/backups/feature").status_code == 404
    assert post(client, "/projects/acme/backups/feature/now").status_code == 404
    assert "/backups/feature" not in client.get(
        "/projects/acme/branches/feature").get_data(as_text=True)
    assert 'href="/projects/acme/backups/main"' in client.get(
        "/projects/acme/branches/main").get_data(as_text=True)
    assert client.get("/projects/acme/backups/qa").status_code == 200


def test_back_up_now_needs_the_csrf_token_and_queues_one_backup_task(client_as, branches,
                                                                     db):
    client = client_as("owner")
    assert client.post(f"{TAB}/now").status_code == 400
    assert tasks(db) == []
    answer = post(client, f"{TAB}/now")
    assert answer.status_code == 303 and answer.headers["Location"].endswith(TAB)
    (task,) = tasks(db)
    assert (task["kind"], task["state"], task["build_id"]) == ("backup", "queued", None)
    assert task["branch_id"] == branches["main"]["branch_id"]
    assert post(client, f"{TAB}/now").status_code == 303
    again = client.get(TAB).get_data(as_text=True)
    assert "a backup of main is already on its way" in flashes(again)
    assert len(tasks(db)) == 1
    page = client.get(TAB).get_data(as_text=True)
    assert 'data-state="queued"' in page and 'hx-trigger="every 2s"' in page
    fragment = client.get(TAB, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="backup-list"' in fragment and "<html" not in fragment


def test_the_list_shows_sizes_a_chart_and_each_backup_s_verification(client_as, branches,
                                                                      db):
    old = add_backup(db, branches["main"], 2, dump=40_000_000, files=60_000_000,
                     added=100_000_000)
    new = add_backup(db, branches["main"], 1, dump=41_000_000, files=61_000_000,
                     added=3_000_000)
    failed = add_backup(db, branches["main"], 0.5, 0, 0, 0, state="failed")
    with db.transaction() as conn:
        conn.execute("INSERT INTO backup_verifications (project_id, backup_id, state, "
                     "finished_at, seconds) VALUES (%s, %s, 'ok', now(), 2)",
                     (branches["main"]["project_id"], new["id"]))
    page = client_as("owner").get(TAB).get_data(as_text=True)
    for row in (old, new, failed):
        assert f'data-backup="{row["id"]}"' in page
    assert "102.0 MB" in page and "3.0 MB" in page and "pg_dump failed" in page
    assert "<polyline" in page and page.count('<circle') == 2
    assert f'/backups/{new["id"]}/download?format=zip' in page
    assert f'/backups/{new["id"]}/restore' in page
    assert f'/backups/{failed["id"]}/restore' not in page
    assert '<span class="badge green" title="">ok</span>' in page
    assert 'hx-trigger' not in page  # nothing running: no polling


def test_the_password_notice_shows_its_path_to_appliance_admins_only(client_as, branches,
                                                                     config):
    path = str(config.paths.data_dir / "backups" / "restic-password")
    assert path in client_as("admin").get(TAB).get_data(as_text=True)
    member_page = client_as("owner").get(TAB).get_data(as_text=True)
    assert path not in member_page and "keep a copy of it" in member_page


def test_a_failed_verification_is_a_red_notice_on_the_project_page(client_as, branches, db):
    client = client_as("owner")
    assert "verification-failed" not in client.get("/projects/acme").get_data(as_text=True)
    with db.transaction() as conn:
        conn.execute("INSERT INTO backup_verifications (project_id, state, finished_at, error) "
                     "VALUES (%s, 'failed', now(), 'filestore/ab/abcd: sha1 differs')",
                     (branches["main"]["project_id"],))
    page = client.get("/projects/acme").get_data(as_text=True)
    assert "verification-failed" in page and "filestore/ab/abcd: sha1 differs" in page


def test_downloads_and_restores_are_for_members_of_the_backup_s_project(client_as,
                                                                       branches, db):
    row = add_backup(db, branches["main"], 1, 10, 10, 10)
    outsider = client_as("outsider")
    assert outsider.get(f"/backups/{row['id']}/download").status_code == 404
    assert outsider.get(f"/backups/{row['id']}/restore").status_code == 404
    assert post(outsider, f"/backups/{row['id']}/restore", branch="main").status_code == 404
    failed = add_backup(db, branches["main"], 1, 0, 0, 0, state="failed")
    assert client_as("owner").get(f"/backups/{failed['id']}/download").status_code == 400


def test_the_restore_confirmation_names_the_target_branch(client_as, branches, db):
    row = add_backup(db, branches["main"], 1, 10, 10, 10)
    client = client_as("owner")
    page = client.get(f"/backups/{row['id']}/restore").get_data(as_text=True)
    assert '<strong class="target-branch">main</strong> (production)' in page
    page = client.get(f"/backups/{row['id']}/restore?branch=qa").get_data(as_text=True)
    assert '<strong class="target-branch">qa</strong> (staging)' in page
    assert '<option value="feature"' not in page  # development is no target
    assert post(client, f"/backups/{row['id']}/restore").status_code == 303  # no branch
    # Restores are for the project's administrators: a developer is refused, page and form.
    developer = client_as("member")
    assert developer.get(f"/backups/{row['id']}/restore").status_code == 403
    refused = post(developer, f"/backups/{row['id']}/restore", branch="main")
    assert refused.status_code == 403


# -- uploads -----------------------------------------------------------------------------

def test_an_upload_arrives_in_pieces_into_a_folder_of_the_daemon_only(client_as, branches,
                                                                     config):
    client = client_as("owner")
    data = os.urandom(3000)
    made = start_upload(client, len(data))
    assert made.status_code == 201
    upload = made.get_json()
    assert upload["received"] == 0 and upload["chunk_bytes"] == config.backup.upload_chunk_bytes
    for offset in range(0, len(data), 1024):
        answer = send(client, upload, offset, data[offset:offset + 1024])
        assert answer.status_code == 200, answer.get_json()
    done = status(client, upload).get_json()
    assert (done["state"], done["received"]) == ("complete", 3000)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    path = upload_jobs.data_path(config, upload["id"])
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_a_piece_at_a_wrong_offset_is_refused_409_and_changes_nothing(client_as, branches,
                                                                     config):
    client = client_as("owner")
    upload = start_upload(client, 100).get_json()
    assert send(client, upload, 0, b"a" * 40).status_code == 200
    for offset in (0, 10, 41, 100):
        answer = send(client, upload, offset, b"b" * 10)
        assert answer.status_code == 409 and answer.get_json()["received"] == 40
    assert status(client, upload).get_json()["received"] == 40
    assert upload_jobs.data_path(config, upload["id"]).read_bytes() == b"a" * 40


def test_an_upload_past_the_size_cap_is_refused_413(client_as, branches, config):
    config.backup.upload_max_bytes = 1000
    config.backup.upload_chunk_bytes = 100
    client = client_as("owner")
    too_big = start_upload(client, 1001)
    assert too_big.status_code == 413 and "upload_max_bytes" in too_big.get_json()["error"]
    upload = start_upload(client, 150).get_json()
    assert send(client, upload, 0, b"x" * 101).status_code == 413  # a piece too big
    assert send(client, upload, 0, b"x" * 100).status_code == 200
    past = send(client, upload, 100, b"x" * 60)  # past the size announced
    assert past.status_code == 413
    assert status(client, upload).get_json()["received"] == 100


def test_an_upload_resumes_after_a_dropped_connection_with_the_same_sha256(client_as,
                                                                           branches):
    client = client_as("owner")
    data = os.urandom(5000)
    upload = start_upload(client, len(data)).get_json()
    assert send(client, upload, 0, data[:2000]).status_code == 200
    # The connection drops 700 bytes into the next piece of 2000.
    cut = client.post(f"{UPLOADS}/{upload['id']}/chunks?offset=2000",
                      input_stream=io.BytesIO(data[2000:2700]),
                      content_type="application/octet-stream",
                      headers={"X-CSRF-Token": csrf(client)},
                      environ_overrides={"CONTENT_LENGTH": "2000"})
    assert cut.status_code == 400
    # The page is reloaded: it asks where the server stands, and goes on from there.
    received = status(client, upload).get_json()["received"]
    assert received == 2000
    assert send(client, upload, received, data[received:4000]).status_code == 200
    last = send(client, upload, 4000, data[4000:]).get_json()
    assert last["state"] == "complete"
    assert last["sha256"] == hashlib.sha256(data).hexdigest()


def test_another_person_can_neither_see_nor_add_to_my_upload(client_as, branches):
    mine = client_as("owner")
    upload = start_upload(mine, 100).get_json()
    for other in (client_as("admin"), client_as("outsider")):
        assert status(other, upload).status_code == 404
        assert send(other, upload, 0, b"z" * 10).status_code == 404
        imported = other.post(f"{UPLOADS}/{upload['id']}/import", json={"branch": "qa"},
                              headers={"X-CSRF-Token": csrf(other)})
        assert imported.status_code == 404
    assert status(mine, upload).get_json()["received"] == 0
    assert start_upload(client_as("outsider"), 10).status_code == 404


def test_a_piece_without_the_csrf_token_is_refused(client_as, branches):
    client = client_as("owner")
    upload = start_upload(client, 10).get_json()
    refused = client.post(f"{UPLOADS}/{upload['id']}/chunks?offset=0", data=b"x" * 10,
                          content_type="application/octet-stream")
    assert refused.status_code == 400
    assert client.post(UPLOADS, json={"name": "a.zip", "size": 10}).status_code == 400
    assert status(client, upload).get_json()["received"] == 0


def test_a_garbage_file_is_refused_at_import_and_nothing_is_queued(client_as, branches, db):
    client = client_as("owner")
    upload = start_upload(client, 11, name="acme.zip").get_json()
    send(client, upload, 0, b"not a zip!!")
    answer = client.post(f"{UPLOADS}/{upload['id']}/import", json={"branch": "qa"},
                         headers={"X-CSRF-Token": csrf(client)})
    assert answer.status_code == 400 and answer.get_json()["error"]
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM builds WHERE trigger = 'import'"
                            ).fetchone()["n"] == 0
    assert status(client, upload).get_json()["state"] == "complete"  # another try may come


def test_an_unfinished_upload_cannot_be_imported(client_as, branches):
    client = client_as("owner")
    upload = start_upload(client, 100).get_json()
    answer = client.post(f"{UPLOADS}/{upload['id']}/import", json={"branch": "qa"},
                         headers={"X-CSRF-Token": csrf(client)})
    assert answer.status_code == 409 and "0 of 100 bytes" in answer.get_json()["error"]


def test_abandoned_uploads_are_removed_after_the_expiry(client_as, branches, config, db):
    client = client_as("owner")
    old = start_upload(client, 10).get_json()
    stray = upload_jobs.uploads_dir(config) / "left-by-a-crash-0123456789"
    stray.mkdir()
    svc = Services(config, db)
    assert upload_jobs.prune_abandoned(svc) == []
    later = datetime.now(timezone.utc) + timedelta(hours=config.backup.upload_expiry_hours + 1)
    os.utime(stray, (later.timestamp() - 7200 * 24, later.timestamp() - 7200 * 24))
    assert sorted(upload_jobs.prune_abandoned(svc, now=later)) == sorted(
        [old["id"], stray.name])
    assert status(client, old).status_code == 404
    assert list(upload_jobs.uploads_dir(config).iterdir()) == []


def test_a_download_that_fails_midway_cuts_the_connection(app, client_as, branches, db,
                                                          monkeypatch):
    from waitress import create_server
    row = add_backup(db, branches["main"], 1, 10, 10, 10)

    def failing(svc, backup):
        yield b"PK\x03\x04" + b"x" * 5000
        raise RuntimeError("restic died")

    monkeypatch.setattr(backup_export, "zip_stream", failing)
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        client = client_as("owner")  # its session cookie, sent to the real server
        cookie = get_cookie(client, "appliance_session")
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        conn.request("GET", f"/backups/{row['id']}/download",
                     headers={"Cookie": f"appliance_session={cookie}"})
        response = conn.getresponse()
        assert response.status == 200
        assert "attachment" in response.getheader("Content-Disposition")
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        server.close()


# -- with a real production ------------------------------------------------------------

LIVE = "webbk"  # its own name: project roles are the cluster's, shared with other suites


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A daemon with a production of `webbk`; a member `keeper` of it."""
    folder = tmp_path_factory.mktemp("webbackups")
    appliance = Appliance(folder, "webbk")
    patch = pytest.MonkeyPatch()
    patch.setenv("APPLIANCE_BACKUP_DAILY", "false")  # only the tests' backups
    try:
        appliance.start()
        token = appliance.make_user("admin")
        project = appliance.make_project(LIVE)
        with appliance.db.transaction() as conn:
            keeper = store_users.create_user(conn, "keeper", PASSWORD)
            store_users.add_member(conn, project["id"], keeper["id"], "admin")
        _, (build_id,) = push(make_repo(folder / "work", "stages/v1"),
                              appliance.remote(LIVE, "admin", token), "main")
        build = appliance.wait_build(build_id, timeout=300)
        assert build["state"] == "running", build["reason"]
        appliance.project, appliance.build = project, build
        yield appliance
    finally:
        appliance.close()
        patch.undo()


@pytest.fixture
def keeper(live):
    """A test client of the daemon's state signed in as `keeper`."""
    flask_app = create_app(live.config, live.db)
    flask_app.config["TESTING"] = True
    client = flask_app.test_client()
    assert login(client, "keeper").status_code == 302
    return client


def wait_for(predicate, timeout: float = 180, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.mark.docker
def test_back_up_now_is_made_by_the_task_pool_and_listed_done(live, keeper):
    tab = f"/projects/{LIVE}/backups/main"
    assert post(keeper, f"{tab}/now").status_code == 303

    def done():
        with live.db.transaction() as conn:
            rows = backups_store.list_backups(conn, live.project)
            task = conn.execute("SELECT * FROM tasks WHERE kind = 'backup' ORDER BY id DESC "
                                "LIMIT 1").fetchone()
        assert task["state"] != "failed", task["error"]
        return rows and rows[0]["state"] == "done" and task["state"] == "done" and rows[0]

    row = wait_for(done, what="the backup")
    assert (row["kind"], row["branch"], row["created_by"]) == ("manual", "main",
                                                              row["created_by"])
    page = keeper.get(tab).get_data(as_text=True)
    assert f'data-backup="{row["id"]}" data-state="done"' in page
    assert "hx-trigger" not in page  # nothing left running: no more polling


@pytest.mark.docker
def test_a_download_streams_a_valid_zip_and_the_native_dump(live, keeper):
    script = ("a = env['ir.attachment'].create({'name': 'scan.bin', 'raw': b'a scan'})\n"
              "env.cr.commit()\nprint(a.store_fname)\n")
    made = odoo_shell(live, live.build, script)
    assert made.returncode == 0, made.stderr[-2000:]
    store_fname = made.stdout.strip().splitlines()[-1]
    row = backup_jobs.create(live.svc, live.project)
    zipped = keeper.get(f"/backups/{row['id']}/download")
    assert zipped.status_code == 200 and zipped.is_streamed
    assert zipped.headers["Content-Type"] == "application/zip"
    assert zipped.headers["Content-Disposition"].startswith('attachment; filename="webbk-main-')
    archive = zipfile.ZipFile(io.BytesIO(zipped.get_data()))
    names = archive.namelist()
    assert "dump.sql" in names and "manifest.json" in names
    assert archive.read(f"filestore/{store_fname}") == b"a scan"
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["major_version"] == "18.0" and "shop" in manifest["modules"]
    assert b"CREATE TABLE" in archive.read("dump.sql")
    dump = keeper.get(f"/backups/{row['id']}/download?format=dump").get_data()
    assert dump.startswith(b"PGDMP") and hashlib.sha256(dump).hexdigest() == row["sha256"]
