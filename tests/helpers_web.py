"""Plain helpers of the web tests (not fixtures, not tests): signing in through Flask's test
client, posting forms with their CSRF token, reading flash messages, and a work tree that
pushes real commits into a project's bare repository.

The fixtures built on them (owner / member / outsider, `client_as`, `make_build`, `work`)
are in the conftest.py files.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from appliance.runtime import git as git_runtime
from appliance.store import projects as store_projects
from tests.integration.harness import git

# The password of every user the fixtures make.
PASSWORD = "correct horse"


def csrf(client) -> str:
    """The session's CSRF token, set to a known one if the session has none yet."""
    with client.session_transaction() as session:
        if "csrf" not in session:
            session["csrf"] = "test-token-" + "x" * 20
        return session["csrf"]


def login(client, name: str, password: str = PASSWORD):
    client.get("/login")
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf_token": csrf(client)})


def post(client, path: str, **data):
    """A form posted as the page's form posts it, with the CSRF token."""
    return client.post(path, data={"csrf_token": csrf(client), **data})


def flashes(page: str) -> list[str]:
    """The flash messages a page shows, unescaped."""
    return [html.unescape(text)
            for text in re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', page, re.S)]


class Work:
    """A work tree pushing into a project's bare repository (no hooks: branch rows are
    recorded as a push would, without queuing builds)."""

    def __init__(self, config, db, project: dict, folder: Path):
        self.db, self.project = db, project
        self.bare = config.paths.repos / f"{project['name']}.git"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        git_runtime.init_repo(self.bare, folder.parent / "nohooks")
        self.folder = folder
        folder.mkdir()
        git(folder, "init", "-q", "-b", "main")

    def commit(self, message: str, files: dict[str, str], branch: str | None = None,
               start: str | None = None) -> str:
        """Commit files on branch (created from start if given), push it, record the row."""
        if start is not None:
            git(self.folder, "checkout", "-q", "-b", branch, start)
        elif branch is not None:
            git(self.folder, "checkout", "-q", branch)
        for name, text in files.items():
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.folder, "add", "-A")
        git(self.folder, "commit", "-q", "-m", message)
        current = git(self.folder, "branch", "--show-current").stdout.strip()
        git(self.folder, "push", "-q", str(self.bare), f"HEAD:refs/heads/{current}")
        with self.db.transaction() as conn:
            store_projects.ensure_branch(conn, self.project, current)
        return self.head(current)

    def head(self, branch: str) -> str | None:
        return git_runtime.branch_head(self.bare, branch)
