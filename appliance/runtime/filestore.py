"""Odoo filestores on this host: content-addressed, write-once files.

Since a file is never rewritten in place, a copy of a filestore (a staging clone, a
pre-update snapshot) is a tree of hard links, not a copy of bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from appliance.errors import UserError

log = logging.getLogger(__name__)


def hardlink_copy(source: Path, target: Path) -> int:
    """Copy the tree at source to target (which must not exist) as hard links; returns
    the number of files. A failure leaves no partial target."""
    if target.exists():
        raise FileExistsError(f"{target} exists")
    count = 0
    try:
        for folder, dirs, files in os.walk(source):
            relative = Path(folder).relative_to(source)
            (target / relative).mkdir(parents=True, exist_ok=True)
            for name in files:
                os.link(os.path.join(folder, name), target / relative / name)
                count += 1
    except BaseException:
        remove_tree(target)
        raise
    return count


def replace_tree(snapshot: Path, live: Path) -> None:
    """Put snapshot in the place of live: live is moved aside, snapshot renamed in, the
    old tree removed. Each rename is atomic; the window between them is tiny."""
    aside = live.with_name(live.name + ".replaced")
    remove_tree(aside)
    if live.exists():
        live.rename(aside)
    live.parent.mkdir(parents=True, exist_ok=True)
    snapshot.rename(live)
    remove_tree(aside)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_free_space(path: Path, needed_bytes: int) -> None:
    """Refuse, before anything changes, when the disk under path lacks needed_bytes."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise UserError(f"not enough free disk: {needed_bytes // 2**20} MB needed, "
                        f"{free // 2**20} MB free on {probe}")


def tree_size(path: Path) -> int:
    """Bytes used by the files below path, each inode counted once."""
    seen, total = set(), 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total
