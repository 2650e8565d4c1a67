"""1,000 hostile paths against the Editor's real routes: traversal in every spelling
(plain, percent-encoded once and twice, overlong UTF-8, backslashes, NUL, fullwidth
dots), absolute paths, and symbolic links out of the tree (to a file, to a folder on
the way, relative and absolute), a hard link to a file outside, a FIFO. Canary files
outside the tree hold a secret: no answer may show it and none may change; nothing
new may appear outside the tree."""

from __future__ import annotations

import itertools
import os
import random
import urllib.parse
from collections import Counter

import pytest

from tests.helpers_web import csrf

SECRET = "canary-6f1d2c"
COUNT = 1000
TRAVERSALS = ["..", "%2e%2e", "%2E%2E", "%252e%252e", ".%2e", "%2e.", "%c0%ae%c0%ae",
              "%uff0e%uff0e", "\uff0e\uff0e", "..%00", "...", "....", ". .", "..;", "..%20"]
SEPARATORS = ["/", "%2f", "%2F", "%252f", "\\", "%5c", "%255c", "//", "/./", "\0/", "%00/"]
TARGETS = ["secret.conf", "canary", "data/canary", "builds/{id}/secret.conf",
           "etc/passwd", "proc/self/environ"]
PREFIXES = ["", "/", "shop/", "./", "link-dir/", "link-rel/", "shop/up/", "link-file/",
            "hard.py/", "{root}/", "file://", "\\\\", "~/"]
# Through links and special files inside the tree, without any traversal.
INSIDE = ["link-file", "link-rel", "link-dir/secret.conf", "shop/up/shop/models.py",
          "shop/up/secret.conf", "hard.py", "fifo", "link-dir", "shop/up"]


@pytest.fixture
def site(config, make_build, tmp_path):
    """A development build whose tree holds every kind of way out, and the canaries."""
    build = make_build("feature/x", state="running", addons_dirs=".")
    folder = config.paths.builds / str(build["id"])
    root = folder / "src"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__manifest__.py").write_text("{'name': 'Shop'}\n")
    (root / "shop" / "models.py").write_text("price = 1\n")
    canaries = [folder / "secret.conf", config.paths.data_dir / "canary", tmp_path / "canary"]
    for canary in canaries:
        canary.write_text(f"{SECRET}\n")
    os.symlink(canaries[0], root / "link-file")
    os.symlink("../secret.conf", root / "link-rel")
    os.symlink(folder, root / "link-dir")
    os.symlink("..", root / "shop" / "up")
    os.link(canaries[1], root / "hard.py")
    os.mkfifo(root / "fifo")
    return build, root, canaries


def hostile_paths(build: dict, root) -> list[str]:
    """COUNT distinct paths, the same every run."""
    fixed = [*INSIDE, str(root.parent / "secret.conf"), "/etc/passwd"]
    found = set()
    combos = itertools.product(PREFIXES, TRAVERSALS, SEPARATORS, range(1, 5), TARGETS)
    for prefix, dots, separator, depth, target in combos:
        found.add((prefix + (dots + separator) * depth + target)
                  .format(id=build["id"], root=root))
    rest = sorted(found - set(fixed))
    return fixed + random.Random(14).sample(rest, COUNT - len(fixed))


def snapshot(paths) -> dict:
    """Every file outside the tree that a write could reach: its bytes and its times."""
    state = {}
    for top in paths:
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "src"]
            for name in files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                state[path] = (info.st_mtime_ns, info.st_size,
                               open(path, "rb").read() if name in ("secret.conf", "canary")
                               else None)
    return state


def test_a_thousand_hostile_paths_through_the_editor_routes_reach_nothing_outside(
        client_as, config, db, site, tmp_path):
    build, root, canaries = site
    client = client_as("member")
    token = csrf(client)
    base = f"/builds/{build['id']}/editor"
    before = snapshot([config.paths.data_dir, tmp_path])
    statuses, escapes = Counter(), []
    paths = hostile_paths(build, root)
    assert len(paths) == COUNT and len(set(paths)) == COUNT
    for number, path in enumerate(paths):
        route = ("view", "save", "update", "view", "save")[number % 5]
        if route == "view":
            # As a browser or a script would send it: the "%" forms reach the server as
            # written (decoded once by it), everything else encoded.
            query = "path=" + urllib.parse.quote(path, safe="%/")
            response = client.get(base, query_string=query)
        else:
            response = client.post(f"{base}/{route}", data={
                "csrf_token": token, "path": path, "content": "PWNED", "digest": ""})
        statuses[(route, response.status_code)] += 1
        if SECRET in response.get_data(as_text=True):
            escapes.append((route, path))
        if number % 50 == 0:  # refusals flash: keep the session cookie small
            with client.session_transaction() as session:
                session.pop("_flashes", None)
    after = snapshot([config.paths.data_dir, tmp_path])
    assert escapes == [], escapes[:10]
    assert after == before
    assert all(canary.read_text() == f"{SECRET}\n" for canary in canaries)
    assert not [name for folder, _dirs, files in os.walk(root) for name in files
                if os.path.isfile(os.path.join(folder, name))
                and not os.path.islink(os.path.join(folder, name)) and name != "fifo"
                and b"PWNED" in open(os.path.join(folder, name), "rb").read()]
    assert {status for (_route, status) in statuses} <= {303, 400, 404}, statuses
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0
