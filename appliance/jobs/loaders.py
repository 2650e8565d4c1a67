"""Where a restored or imported database comes from: the shape both sources share.

A restore (jobs/restores.py: a backup from the restic repository) and an import
(jobs/dump_import.py: a database manager zip, an Odoo.sh backup, a .sql, .sql.gz or custom
dump) give the pipelines the same object. The production and staging pipelines load it
into a new database beside the live one, and only then swap: a loader never touches an
existing database or folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class Loaded:
    """What a load put in place."""

    database: str
    filestore_files: int = 0
    dump_bytes: int = 0
    manifest: dict = field(default_factory=dict)  # Odoo's dump manifest, when there is one
    summary: str = ""                              # one line for the build's step and history


class Loader(Protocol):
    """A source of an Odoo database and its filestore."""

    # For people: "backup #12 (daily, 2026-12-01 03:00)" or "upload acme.zip (1.2 GB)".
    description: str

    def check(self, odoo_version: str) -> None:
        """Everything that can be known before anything is replaced: the format, that it
        is Odoo's, its major version against the project's (`odoo_version`, e.g. "18.0"),
        its integrity as far as it can be read without loading it. Raises UserError with
        a clear message; changes nothing."""

    def load(self, svc, database: str, owner: str, filestore_dir: Path) -> Loaded:
        """Create `database` (it must not exist) owned by the role `owner` and load the
        data into it, streamed (free space about the dump's size, never a full copy), and
        fill `filestore_dir` (it must not exist; made here). On any failure, the database
        and the folder made so far are removed and UserError/BackupError says why."""
