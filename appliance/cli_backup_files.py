"""The file side of `appliance backup download` and `appliance backup import`: a backup
written to a file (or stdout) as it streams, and a file or URL handed to an import."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from appliance.errors import UserError
from appliance.jobs import uploads as upload_jobs
from appliance.store import uploads as uploads_store

log = logging.getLogger(__name__)

EXTENSIONS = {"zip": "zip", "dump": "dump"}


def default_name(row: dict, kind: str) -> str:
    branch = (row.get("branch") or "backup").replace("/", "_")
    return (f"{row['project']}-{branch}-{row['started_at']:%Y%m%d-%H%M}-{row['id']}."
            f"{EXTENSIONS[kind]}")


def write_download(svc, row: dict, kind: str, output: str | None) -> dict:
    """Stream the backup into `output` (a path, '-' for stdout, None for a name made from
    the backup's, here). The file appears whole or not at all: it is written beside
    under a temporary name and renamed at the end. Returns {backup_id, format, path,
    bytes, sha256} (path None for stdout)."""
    from appliance.jobs import backup_export
    if row["state"] != "done" or row["forgotten_at"] is not None:
        raise UserError(f"backup #{row['id']} is {row['state']}"
                        f"{' and forgotten' if row['forgotten_at'] else ''}: nothing to "
                        "download")
    make = backup_export.zip_stream if kind == "zip" else backup_export.dump_stream
    digest, size = hashlib.sha256(), 0
    if output == "-":
        out = sys.stdout.buffer
        for block in make(svc, row):
            out.write(block)
            digest.update(block)
            size += len(block)
        out.flush()
        return {"backup_id": row["id"], "format": kind, "path": None, "bytes": size,
                "sha256": digest.hexdigest()}
    path = Path(output or default_name(row, kind)).absolute()
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".part", delete=False)
    try:
        with handle:
            for block in make(svc, row):
                handle.write(block)
                digest.update(block)
                size += len(block)
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise
    return {"backup_id": row["id"], "format": kind, "path": str(path), "bytes": size,
            "sha256": digest.hexdigest()}


def import_source(svc, project: dict, source: str, branch: str,
                  user: dict | None = None) -> tuple[dict, str]:
    """Queue the import of a file or an http(s) URL into `branch`, for `user` (None: the
    operator); returns (the build, the name of what is imported). A URL is downloaded first into an upload, which the
    build removes when it ends (and which goes at once if the import is refused)."""
    from appliance.jobs import restores
    if source.lower().startswith(("http://", "https://")):
        row = upload_jobs.fetch_url(svc, project, source)
        try:
            build = restores.request_import(svc, project,
                                            upload_jobs.data_path(svc.config, row["id"]),
                                            row["name"], branch, user, remove_after=True)
        except BaseException:
            with svc.db.transaction() as conn:
                uploads_store.delete(conn, row["id"])
            shutil.rmtree(upload_jobs.uploads_dir(svc.config) / row["id"], ignore_errors=True)
            raise
        with svc.db.transaction() as conn:
            uploads_store.imported(conn, row["id"], build["id"])
        return build, row["name"]
    path = Path(source).absolute()
    if not path.is_file():
        raise UserError(f"{source}: no such file (or not a regular file)")
    upload_jobs.check_size(svc.config, path.stat().st_size)
    return restores.request_import(svc, project, path, path.name, branch, user), path.name
