"""git push over HTTP to a running daemon: builds appear and end green, yellow or red."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from appliance import layout
from tests.host import ROOT
from tests.integration.harness import Appliance, git, make_repo, push

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("appliance"), "push")
    try:
        app.start()
        app.token = app.make_user("admin")
        app.make_project("acme")
        yield app
    finally:
        app.close()


def remote(app):
    return app.remote("acme", "admin", app.token)


def pushed_build(app, tmp_path, addon_set, branch, files=None):
    repo = make_repo(tmp_path / branch.replace("/", "_"), addon_set, files)
    result, ids = push(repo, remote(app), branch)
    assert len(ids) == 1, result.stderr
    assert f"{app.url}/builds/{ids[0]}" in result.stderr
    return app.wait_build(ids[0])


def log_text(app, build, name="install"):
    return layout.log_path(app.config, build["id"], name).read_text()


def test_an_addon_with_passing_tests_ends_green_and_running(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "green", "feature-green")
    assert (build["state"], build["result"]) == ("running", "success"), build["reason"]
    steps = {s["name"]: s for s in appliance.steps(build["id"])}
    assert all(s["state"] == "done" for s in steps.values()), steps
    assert all(s["seconds"] is not None for s in steps.values())
    assert "odoo.tests.result: 0 failed, 0 error(s) of" in log_text(appliance, build)


def test_the_running_build_answers_web_health_at_its_address(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "green", "feature-health")
    url = layout.build_url(appliance.config, build)
    with urllib.request.urlopen(url + "web/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "pass"}
    with urllib.request.urlopen(url + "web/login", timeout=10) as response:
        assert response.status == 200


def test_a_failing_test_ends_red_with_the_test_named(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "red_test", "feature-red")
    assert build["result"] == "failure"
    names = [t["name"] for t in build["failed_tests"]]
    assert names and all("." in name for name in names), build["failed_tests"]
    assert "failed" in build["reason"]


def test_a_warning_only_install_ends_yellow(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "yellow", "feature-yellow")
    assert (build["state"], build["result"]) == ("running", "warning"), build["reason"]
    assert any("no access rules" in w for w in build["warnings"])


def test_an_addon_raising_on_import_ends_red_with_the_whole_traceback(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "import_error", "feature-import")
    assert (build["state"], build["result"]) == ("failed", "failure")
    text = log_text(appliance, build)
    assert "Traceback (most recent call last):" in text
    from appliance.runtime.odoo import parse_log
    records = [r for r in parse_log(text) if "Traceback" in r.text]
    assert records and records[0].level == "CRITICAL"
    assert records[0].text.rstrip().splitlines()[-1].strip(), "traceback ends with the error"
    assert not appliance.svc.docker.find(build_id=build["id"])


def test_a_repository_without_modules_says_no_odoo_module_found(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "no_module", "no-modules")
    assert build["state"] == "failed"
    assert "no Odoo module found" in build["reason"]


def test_a_manifest_that_is_not_a_dict_fails_with_a_clear_reason(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "bad_manifest", "bad-manifest")
    assert build["state"] == "failed"
    assert "__manifest__.py" in build["reason"]


def test_pushing_to_an_unknown_project_is_refused(appliance, tmp_path):
    repo = make_repo(tmp_path / "r", "green")
    result, ids = push(repo, appliance.remote("nope", "admin", appliance.token), "main",
                       check=False)
    assert result.returncode != 0 and not ids
    assert "does not exist" in result.stderr


def test_a_wrong_token_is_refused_and_builds_nothing(appliance, tmp_path):
    repo = make_repo(tmp_path / "r", "green")
    before = _count_builds(appliance)
    result, _ = push(repo, appliance.remote("acme", "admin", "appl_wrong"), "main", check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr or "401" in result.stderr
    assert _count_builds(appliance) == before


@pytest.mark.parametrize("branch", ["feat;rm -rf ~", "a$(id)", "x" * 150, "-dash", "a|b"])
def test_hostile_branch_names_are_refused_and_change_nothing(appliance, tmp_path, branch):
    repo = make_repo(tmp_path / "r", "green")
    before = _count_builds(appliance)
    result = git(repo, "push", remote(appliance), f"HEAD:refs/heads/{branch}", check=False)
    assert result.returncode != 0
    assert _count_builds(appliance) == before
    listing = git(repo, "ls-remote", remote(appliance), check=False).stdout
    assert branch not in listing


def test_a_branch_name_with_dots_or_spaces_never_reaches_the_appliance(appliance, tmp_path):
    repo = make_repo(tmp_path / "r", "green")
    before = _count_builds(appliance)
    for branch in ("a..b", "with space"):
        result = git(repo, "push", remote(appliance), f"HEAD:refs/heads/{branch}", check=False)
        assert result.returncode != 0
        # A client that does not check: the ref straight into receive-pack.
        answer = raw_receive_pack(appliance, repo, f"refs/heads/{branch}")
        assert f"ng refs/heads/{branch}" in answer, answer
    assert _count_builds(appliance) == before
    refs = git(repo, "ls-remote", remote(appliance)).stdout
    assert "a..b" not in refs and "with space" not in refs


@pytest.mark.parametrize("branch", ["x;id", "$(id)", "caf\u00e9", "-leading", "b" * 101])
def test_a_branch_name_git_accepts_but_the_appliance_does_not_is_refused(appliance, tmp_path,
                                                                        branch):
    repo = make_repo(tmp_path / "r", "green")
    before = _count_builds(appliance)
    result = git(repo, "push", remote(appliance), f"HEAD:refs/heads/{branch}", check=False)
    assert result.returncode != 0
    assert "is not accepted" in result.stderr, result.stderr
    # git itself takes these names: the appliance's pre-receive check is what declines.
    answer = raw_receive_pack(appliance, repo, f"refs/heads/{branch}")
    assert "pre-receive hook declined" in answer and "ok refs/heads/" not in answer, answer
    assert _count_builds(appliance) == before
    assert branch not in git(repo, "ls-remote", remote(appliance)).stdout


def raw_receive_pack(app, repo, ref: str) -> str:
    """POST a ref update and its pack to git-receive-pack as a client that checks
    nothing would; returns the answer as text."""
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    objects = git(repo, "rev-list", "--objects", "HEAD").stdout
    pack = subprocess.run(["git", "pack-objects", "--stdout"], cwd=repo, input=objects.encode(),
                          capture_output=True, check=True, timeout=60).stdout
    command = f"{'0' * 40} {head} {ref}\0report-status\n".encode()
    body = f"{len(command) + 4:04x}".encode() + command + b"0000" + pack
    url = f"{app.url}/git/acme.git/git-receive-pack"
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-git-receive-pack-request",
        "Authorization": "Basic " + base64.b64encode(f"admin:{app.token}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode("utf-8", errors="replace")


def test_deleting_a_branch_by_push_is_refused_with_a_message(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "no_module", "to-delete")
    repo = tmp_path / "to-delete"
    result = git(repo, "push", remote(appliance), ":refs/heads/to-delete", check=False)
    assert result.returncode != 0
    assert "deleting a branch by push is not allowed" in result.stderr
    assert "to-delete" in git(repo, "ls-remote", remote(appliance)).stdout
    with appliance.db.transaction() as conn:
        kept = conn.execute("SELECT b.state, br.name FROM builds b JOIN branches br "
                            "ON br.id = b.branch_id WHERE b.id = %s", (build["id"],)).fetchone()
    assert (kept["state"], kept["name"]) == (build["state"], "to-delete")


def test_fetching_back_over_http_returns_the_pushed_commit(appliance, tmp_path):
    repo = make_repo(tmp_path / "src", "no_module")
    push(repo, remote(appliance), "fetch-me")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", "fetch-me", remote(appliance), str(clone)],
                   check=True, capture_output=True, timeout=60)
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == head


def test_the_cli_lists_builds_as_json_and_waits_for_them(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "green", "cli-green")
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(appliance.config_path)]
    out = subprocess.run(cli + ["build", "list", "acme", "--branch", "cli-green", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    listed = json.loads(out)
    assert listed[0]["id"] == build["id"] and listed[0]["result"] == "success"
    assert set(listed[0]["timings"]) >= {"checkout", "image", "install", "health"}
    waited = subprocess.run(cli + ["build", "wait", str(build["id"]), "--timeout", "5"],
                            capture_output=True, text=True, cwd=ROOT)
    assert waited.returncode == 0, waited.stderr


def _count_builds(app) -> int:
    with app.db.transaction() as conn:
        return conn.execute("SELECT count(*) AS n FROM builds").fetchone()["n"]


SLOW_INSTALL = """
import os
import sys
import time

if "--stop-after-init" in sys.argv and os.path.exists("/mnt/src/user/slow"):
    print("SLOW INSTALL: started", flush=True)
    time.sleep(4)
"""


def test_a_daemon_killed_during_a_build_finishes_it_after_restart(tmp_path):
    app = Appliance(tmp_path, "kill")
    try:
        app.start()
        token = app.make_user("admin")
        app.make_project("killme")
        repo = make_repo(tmp_path / "repo", "green", {"slow": "",
                         "demo_ok/hooks_slow.py": SLOW_INSTALL})
        init = repo / "demo_ok" / "__init__.py"
        init.write_text(init.read_text() + "from . import hooks_slow\n")
        git(repo, "commit", "-qam", "Install slowly")
        _, ids = push(repo, app.remote("killme", "admin", token), "feature")
        # Provably mid-install: its one-off container runs and has said so.
        install_log = layout.log_path(app.config, ids[0], "install")
        deadline = time.monotonic() + 300
        while not (install_log.exists() and "SLOW INSTALL: started" in install_log.read_text()):
            assert time.monotonic() < deadline, app.log_path.read_text()[-3000:]
            time.sleep(0.1)
        assert [c.role for c in app.svc.docker.find(build_id=ids[0])] == ["install"]
        app.stop(signal.SIGKILL)
        app.start()
        build = app.wait_build(ids[0], timeout=300)
        assert (build["state"], build["result"]) == ("running", "success"), build["reason"]
        assert build["attempts"] == 2
        with app.db.transaction() as conn:
            kinds = [row["kind"] for row in conn.execute(
                "SELECT kind FROM events WHERE build_id = %s", (ids[0],))]
        assert "build_restarted" in kinds
        leftovers = [c for c in app.svc.docker.find(build_id=ids[0]) if c.role != "server"]
        assert leftovers == []
    finally:
        app.close()


def test_requirements_are_installed_into_the_image_with_pip_output_in_pip_log(appliance,
                                                                              tmp_path):
    # A line unique to this run, so the image is really built here, not found cached.
    requirements = (ROOT / "tests/addons/requirements/requirements.txt").read_text()
    build = pushed_build(appliance, tmp_path, "requirements", "feature-reqs",
                         {"requirements.txt": f"{requirements}# run {uuid.uuid4().hex}\n"})
    assert (build["state"], build["result"]) == ("running", "success"), build["reason"]
    assert build["image"].startswith("appliance/odoo-project:")
    assert "six" in log_text(appliance, build, "pip")


def test_the_cli_prints_a_build_log(appliance, tmp_path):
    build = pushed_build(appliance, tmp_path, "green", "cli-logs")
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(appliance.config_path)]
    out = subprocess.run(cli + ["logs", str(build["id"]), "--file", "install"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "odoo.tests.result" in out


def test_beyond_the_cap_the_least_recently_used_server_stops_and_can_start_again(tmp_path):
    from appliance.store import builds as builds_store
    app = Appliance(tmp_path, "cap", max_servers=1)
    try:
        app.start()
        token = app.make_user("admin")
        app.make_project("capped")
        repo = make_repo(tmp_path / "repo", "green")
        _, (first,) = push(repo, app.remote("capped", "admin", token), "one")
        assert app.wait_build(first)["state"] == "running"
        _, (second,) = push(repo, app.remote("capped", "admin", token), "two")
        assert app.wait_build(second)["state"] == "running"
        stopped = app.wait_build(first, states=("stopped",), timeout=30)
        assert stopped["database"] and app.svc.postgres.exists(stopped["database"])
        assert not app.svc.docker.find(build_id=first)

        with app.db.transaction() as conn:
            builds_store.request_task(conn, "start_server", first)
        again = app.wait_build(first, states=("running",), timeout=60)
        with urllib.request.urlopen(layout.build_url(app.config, again) + "web/login") as r:
            assert r.status == 200
        assert app.wait_build(second, states=("stopped",), timeout=30)["host_port"] is None
    finally:
        app.close()
