"""`appliance backup restore|download|import|verify` against a daemon with a real
production (the stand-in Odoo in Docker), each with --json where it prints; imports from
a file and from a URL served on loopback, the size cap, refusals that queue nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance.jobs import backup as backup_jobs
from appliance.jobs import uploads as upload_jobs
from appliance.store import projects as projects_store
from tests.conftest import ROOT
from tests.integration.harness import Appliance, make_repo, push

pytestmark = pytest.mark.docker

# Its own name: project roles are the cluster's, shared with other suites running now.
PROJECT = "clibk"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clibackup")
    appliance = Appliance(folder, "clibk")
    patch = pytest.MonkeyPatch()
    patch.setenv("APPLIANCE_BACKUP_DAILY", "false")  # only the tests' backups
    try:
        appliance.start()
        token = appliance.make_user("admin")
        project = appliance.make_project(PROJECT)
        _, (build_id,) = push(make_repo(folder / "work", "stages/v1"),
                              appliance.remote(PROJECT, "admin", token), "main")
        build = appliance.wait_build(build_id, timeout=300)
        assert build["state"] == "running", build["reason"]
        appliance.project = project
        appliance.backup = backup_jobs.create(appliance.svc, project)
        yield appliance
    finally:
        appliance.close()
        patch.undo()


def cli(app, *args: str, input: str | None = None, env: dict | None = None,
        text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", "--config",
                           str(app.config_path), "backup", *args], capture_output=True,
                          text=text, cwd=ROOT, input=input, timeout=600,
                          env={**os.environ, **(env or {})})


def builds(app, trigger: str) -> list[dict]:
    with app.db.transaction() as conn:
        return conn.execute("SELECT * FROM builds WHERE trigger = %s ORDER BY id",
                            (trigger,)).fetchall()


@pytest.fixture
def served(tmp_path):
    """An HTTP server on loopback serving tmp_path; yields its base URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *_args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_writes_the_dump_and_the_zip_and_says_so_as_json(app, tmp_path):
    row = app.backup
    made = cli(app, "download", PROJECT, str(row["id"]), "--format", "dump", "-o",
               str(tmp_path / "prod.dump"), "--json")
    assert made.returncode == 0, made.stderr
    said = json.loads(made.stdout)
    data = (tmp_path / "prod.dump").read_bytes()
    assert data.startswith(b"PGDMP") and said["sha256"] == row["sha256"]
    assert (said["bytes"], said["path"], said["format"]) == (len(data),
                                                             str(tmp_path / "prod.dump"), "dump")
    to_stdout = cli(app, "download", PROJECT, str(row["id"]), "--format", "dump", "-o", "-",
                    text=False)
    assert to_stdout.returncode == 0 and to_stdout.stdout == data

    zipped = cli(app, "download", PROJECT, str(row["id"]), "-o", str(tmp_path / "prod.zip"))
    assert zipped.returncode == 0, zipped.stderr
    assert f"written to {tmp_path / 'prod.zip'}" in zipped.stdout
    archive = zipfile.ZipFile(tmp_path / "prod.zip")
    assert {"dump.sql", "manifest.json"} <= set(archive.namelist())
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_download_of_another_project_s_backup_or_an_unknown_one_is_refused(app, tmp_path):
    unknown = cli(app, "download", PROJECT, "999999", "-o", str(tmp_path / "x.zip"))
    assert unknown.returncode == 1 and "no backup #999999" in unknown.stderr
    assert not (tmp_path / "x.zip").exists()


def test_restore_asks_first_and_queues_nothing_when_told_no(app):
    before = builds(app, "restore")
    refused = cli(app, "restore", PROJECT, str(app.backup["id"]), "--branch", "main",
                  input="n\n")
    assert refused.returncode == 1 and "Replace the database and files of clibk/main " \
        "(production)" in refused.stderr
    assert builds(app, "restore") == before


def test_restore_queues_a_build_printed_as_json_that_brings_production_back(app):
    done = cli(app, "restore", PROJECT, str(app.backup["id"]), "--branch", "main", "--yes",
               "--json")
    assert done.returncode == 0, done.stderr
    build = json.loads(done.stdout)
    assert (build["project"], build["branch"], build["trigger"]) == (PROJECT, "main",
                                                                    "restore")
    assert build["page"].endswith(f"/builds/{build['id']}")
    finished = app.wait_build(build["id"], timeout=300)
    assert finished["state"] == "running", finished["reason"]


def test_import_of_a_file_that_is_no_database_is_refused_and_queues_nothing(app, tmp_path):
    garbage = tmp_path / "acme.sql.gz"
    garbage.write_bytes(b"this is no dump at all")
    before = builds(app, "import")
    refused = cli(app, "import", PROJECT, str(garbage), "--branch", "main", "--json")
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert refused.stdout == ""
    assert builds(app, "import") == before
    missing = cli(app, "import", PROJECT, str(tmp_path / "nothing.zip"), "--branch", "main")
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_import_from_a_url_is_downloaded_within_the_cap_and_queued(app, tmp_path, served):
    dump = tmp_path / "prod.dump"
    assert cli(app, "download", PROJECT, str(app.backup["id"]), "--format", "dump", "-o",
               str(dump)).returncode == 0
    too_big = cli(app, "import", PROJECT, f"{served}/prod.dump", "--branch", "main",
                  env={"APPLIANCE_BACKUP_UPLOAD_MAX_BYTES": "1000"})
    assert too_big.returncode == 1 and "upload_max_bytes" in too_big.stderr
    uploads = upload_jobs.uploads_dir(app.config)
    assert not uploads.exists() or list(uploads.iterdir()) == []

    done = cli(app, "import", PROJECT, f"{served}/prod.dump", "--branch", "main", "--json")
    assert done.returncode == 0, done.stderr
    build = json.loads(done.stdout)
    assert (build["branch"], build["trigger"]) == ("main", "import")
    finished = app.wait_build(build["id"], timeout=300)
    assert finished["state"] == "running", finished["reason"]
    with app.db.transaction() as conn:
        upload = conn.execute("SELECT * FROM uploads").fetchone()
    assert upload["state"] == "imported" and upload["build_id"] == build["id"]
    assert upload["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    path = upload_jobs.data_path(app.config, upload["id"])
    deadline = time.monotonic() + 30  # the build removes it as its pipeline returns
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not path.exists()


def test_verify_restores_the_latest_backup_and_says_ok_as_json(app):
    done = cli(app, "verify", PROJECT, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["state"] == "ok"
    with app.db.transaction() as conn:
        project = projects_store.get_project(conn, PROJECT)
    assert result["project_id"] == project["id"]
