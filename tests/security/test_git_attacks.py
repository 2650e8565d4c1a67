"""Attacks through git: oversized pushes, a full repository, symlinks that leave the
checkout, a huge file at checkout, and who may read repositories and checkouts.

Pushes go over HTTP to a real daemon; checkouts read real bare repositories made with the
git command line.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.errors import UnsafeTree
from appliance.runtime import git as git_runtime
from appliance.services import Services
from tests.conftest import ROOT
from tests.integration.harness import Appliance, git, make_repo, push

MiB = 1024 * 1024
MAX_PUSH = 2 * MiB
QUOTA = 8 * MiB


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("appliance"), "gitsec")
    try:
        with open(app.config_path, "a", encoding="utf-8") as handle:
            handle.write(f"\n[git]\nmax_push_bytes = {MAX_PUSH}\n"
                         f"repository_quota = {QUOTA}\n")
        app.config = config_mod.load(app.config_path, env={})
        app.svc = Services(app.config, app.db)
        app.start()
        app.token = app.make_user("admin")
        app.make_project("acme")
        app.make_project("full")
        yield app
    finally:
        app.close()


def bare_path(app, project: str) -> Path:
    return app.config.paths.repos / f"{project}.git"


def object_files(bare: Path) -> set[str]:
    return {str(p.relative_to(bare)) for p in (bare / "objects").rglob("*") if p.is_file()}


def has_object(bare: Path, sha: str) -> bool:
    return git(bare, "cat-file", "-e", sha, check=False).returncode == 0


def random_file_repo(folder: Path, size: int) -> tuple[Path, str]:
    """A work tree with the green addon and `blob.bin` of random bytes; and that blob's id."""
    repo = make_repo(folder, "green")
    (repo / "blob.bin").write_bytes(os.urandom(size))
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-q", "-m", "Add a large file")
    return repo, git(repo, "rev-parse", "HEAD:blob.bin").stdout.strip()


def remote_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("remote:")]


# -- pushes over HTTP ------------------------------------------------------------------

@pytest.mark.docker  # the daemon pushed to talks to the Docker engine
def test_a_push_over_the_size_limit_is_refused_and_nothing_of_it_lands(appliance, tmp_path):
    bare = bare_path(appliance, "acme")
    before = object_files(bare)
    repo, blob = random_file_repo(tmp_path / "big", MAX_PUSH + MiB)
    result, ids = push(repo, appliance.remote("acme", "admin", appliance.token), "big",
                       check=False)
    assert result.returncode != 0 and not ids, result.stderr
    said = "\n".join(remote_lines(result))
    assert "push refused" in said and "[git] max_push_bytes" in said, result.stderr
    assert git_runtime.branch_head(bare, "big") is None
    assert not has_object(bare, blob)
    assert object_files(bare) == before


@pytest.mark.docker  # the daemon pushed to talks to the Docker engine
def test_a_push_that_would_overfill_the_repository_quota_is_refused(appliance, tmp_path):
    bare = bare_path(appliance, "full")
    filler = tmp_path / "filler.bin"
    filler.write_bytes(os.urandom(QUOTA - MiB))
    git(bare, "hash-object", "-w", str(filler))  # the repository is nearly full
    before = object_files(bare)
    repo, blob = random_file_repo(tmp_path / "more", MAX_PUSH - MiB // 2)
    result, ids = push(repo, appliance.remote("full", "admin", appliance.token), "more",
                       check=False)
    assert result.returncode != 0 and not ids, result.stderr
    said = "\n".join(remote_lines(result))
    assert "push refused" in said and "[git] repository_quota" in said, result.stderr
    assert git_runtime.branch_head(bare, "more") is None
    assert not has_object(bare, blob)
    assert object_files(bare) == before


@pytest.mark.docker  # the daemon pushed to talks to the Docker engine
def test_a_pushed_escaping_symlink_fails_the_build_at_checkout_naming_the_link(appliance,
                                                                              tmp_path):
    repo = make_repo(tmp_path / "links", "green")
    os.symlink("d/..", repo / "a")   # lexically `.`, but d -> . makes it the parent
    os.symlink(".", repo / "d")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Links")
    result, ids = push(repo, appliance.remote("acme", "admin", appliance.token), "links")
    build = appliance.wait_build(ids[0])
    assert build["state"] == "failed"
    assert "'a'" in build["reason"] and "d/.." in build["reason"], build["reason"]
    steps = {s["name"]: s["state"] for s in appliance.steps(build["id"])}
    assert steps["checkout"] == "failed", steps
    bare = bare_path(appliance, "acme")
    loose = [p for p in bare.rglob("*") if stat.S_IMODE(p.lstat().st_mode) & 0o007
             and not p.is_symlink()]
    assert not loose, f"readable by others after a push: {loose[:5]}"


@pytest.mark.docker  # the daemon pushed to talks to the Docker engine
def test_a_new_project_repository_is_closed_to_other_users(appliance):
    for project in ("acme", "full"):
        mode = stat.S_IMODE(bare_path(appliance, project).stat().st_mode)
        assert mode & 0o027 == 0, oct(mode)


def test_a_repository_made_before_is_closed_to_other_users_once(tmp_path):
    bare = tmp_path / "old.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    bare.chmod(0o755)
    git_runtime.close_repo(bare)
    opened = [p for p in [bare, *bare.rglob("*")] if stat.S_IMODE(p.stat().st_mode) & 0o027]
    assert not opened, opened[:5]
    assert git(bare, "config", "core.sharedRepository").stdout.strip() == "0640"


# -- checkouts of real repositories ------------------------------------------------------

def bare_with(tmp_path: Path, files: dict[str, bytes], links: dict[str, str] | None = None,
              executable: tuple[str, ...] = ()) -> tuple[Path, str]:
    """A bare repository whose main holds files and symlinks; and main's commit."""
    work = tmp_path / "work"
    work.mkdir()
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
        (work / name).chmod(0o755 if name in executable else 0o644)
    for name, target in (links or {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / name)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Tree")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
    return bare, git(work, "rev-parse", "HEAD").stdout.strip()


@pytest.mark.parametrize("links, named", [
    ({"evil": "/etc"}, "evil"),
    ({"sub/evil": "../../outside"}, "sub/evil"),
    ({"a": "d/../z/..", "d": "."}, "a"),
    ({"a": "d/..", "d": "."}, "a"),
    ({"a": "b", "b": "c/..", "c": "."}, "a"),
], ids=["absolute", "parent", "chained", "chained-to-parent", "link-to-link"])
def test_a_symlink_leading_out_of_the_tree_refuses_the_checkout(tmp_path, links, named):
    files = {"keep.txt": b"kept\n", "z/keep.txt": b"z\n"}
    bare, sha = bare_with(tmp_path, files, links)
    dest = tmp_path / "checkout"
    with pytest.raises(UnsafeTree) as caught:
        git_runtime.export_tree(bare, sha, dest)
    assert f"'{named}'" in str(caught.value) and links[named] in str(caught.value)
    assert not dest.exists(), "a refused checkout leaves nothing behind"


def test_symlinks_that_stay_inside_the_tree_are_written_as_links(tmp_path):
    files = {"addon/data/file.txt": b"data\n", "addon/__init__.py": b""}
    links = {"addon/static/link": "../data/file.txt", "top": "addon",
             "via": "top/data/file.txt", "here": ".", "dangling": "addon/missing"}
    bare, sha = bare_with(tmp_path, files, links)
    dest = tmp_path / "checkout"
    assert git_runtime.export_tree(bare, sha, dest) == 2
    for name, target in links.items():
        assert os.readlink(dest / name) == target
    assert (dest / "via").read_bytes() == b"data\n"


def test_a_checkout_is_readable_only_by_its_owner_and_the_given_group(tmp_path):
    files = {"addon/__init__.py": b"", "run.sh": b"#!/bin/sh\n"}
    bare, sha = bare_with(tmp_path, files, executable=("run.sh",))
    dest = tmp_path / "checkout"
    group = 4242 if os.geteuid() == 0 else os.getegid()  # root gives any group
    git_runtime.export_tree(bare, sha, dest, group=group)
    modes = {str(p.relative_to(dest)): stat.S_IMODE(p.stat().st_mode)
             for p in [dest, *dest.rglob("*")]}
    assert modes == {".": 0o750, "addon": 0o750, "addon/__init__.py": 0o640,
                     "run.sh": 0o750}
    assert all(p.stat().st_gid == group for p in [dest, *dest.rglob("*")])


CHILD = """
import resource, sys, tracemalloc
from pathlib import Path
from appliance.runtime import git
repo, sha, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
git.open_repo(repo)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
git.export_tree(repo, sha, dest)
peak = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, (after - before) * 1024)
"""


@pytest.mark.slow  # a large commit made and checked out
def test_a_large_file_is_streamed_to_disk_at_checkout_not_held_in_memory(tmp_path):
    size = 50 * MiB
    content = os.urandom(size)
    bare, sha = bare_with(tmp_path, {"big.bin": content, "keep.txt": b"kept\n"})
    git(bare, "repack", "-a", "-d", "-q")  # as a large push is kept: in a pack
    dest = tmp_path / "checkout"
    result = subprocess.run([sys.executable, "-c", CHILD, str(bare), sha, str(dest)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    python_peak, rss_growth = map(int, result.stdout.split())
    assert python_peak < size // 10, f"Python held {python_peak} bytes"
    assert rss_growth < size // 5, f"the process grew by {rss_growth} bytes"
    assert hashlib.sha256((dest / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(content).digest()


@pytest.mark.docker  # the daemon pushed to talks to the Docker engine
def test_a_push_the_role_may_not_make_is_refused_and_kept_in_the_audit_trail_with_its_address(
        appliance, tmp_path):
    from appliance.store import projects as projects_store
    from appliance.store import users as users_store
    token = appliance.make_user("dev", admin=False)
    with appliance.db.transaction() as conn:
        project = projects_store.get_project(conn, "acme")
        users_store.add_member(conn, project["id"],
                               users_store.user_by_name(conn, "dev")["id"], "developer")
    repo = make_repo(tmp_path / "repo", "green")
    result, ids = push(repo, appliance.remote("acme", "dev", token), "main", check=False)
    assert result.returncode != 0 and ids == []
    said = "\n".join(remote_lines(result))
    assert "main: your role in acme may not push to a production branch" in said, result.stderr
    assert git(bare_path(appliance, "acme"), "rev-parse", "--verify", "-q", "main",
               check=False).returncode != 0  # nothing landed
    with appliance.db.transaction() as conn:
        row = conn.execute("""SELECT * FROM audit WHERE action = 'git.push' AND user_name = 'dev'
                              ORDER BY id DESC LIMIT 1""").fetchone()
    assert row is not None and row["outcome"] == "denied"
    assert row["address"] == "127.0.0.1" and "production branch" in row["reason"]
