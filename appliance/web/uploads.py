"""Uploads of files to import, in pieces, resumable (the browser side is
static/uploads.js; the files are handled by jobs/uploads.py):

    POST /projects/<name>/uploads            {name, size, sha256?} -> 201 the upload
    GET  /projects/<name>/uploads/<id>       how many bytes have arrived
    POST /projects/<name>/uploads/<id>/chunks?offset=N   the next piece as the body:
         409 when N is not what has arrived (nothing changes), 413 past the size
         (507 at the start when the disk cannot take the file besides other uploads)
    POST /projects/<name>/uploads/<id>/import   {branch}: the import is queued, the
         answer names its build's page (303 to it for a plain form)

Every answer is JSON. An upload is its starter's, in its project: anyone else gets 404.
POSTs carry the CSRF token in the X-CSRF-Token header, as htmx's requests do.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, redirect, request, url_for

from appliance import policy
from appliance.errors import NotFound, PermissionDenied, UserError
from appliance.jobs import uploads as upload_jobs
from appliance.store import projects as store_projects
from appliance.store import uploads as uploads_store
from appliance.web import guard
from appliance.web.common import config, current_user, db, services, visible_project

log = logging.getLogger(__name__)

blueprint = Blueprint("uploads", __name__)


@blueprint.errorhandler(UserError)
def refused(exc: UserError):
    status = (409 if isinstance(exc, upload_jobs.UploadConflict) else
              413 if isinstance(exc, upload_jobs.UploadTooLarge) else
              507 if isinstance(exc, upload_jobs.UploadNoRoom) else
              404 if isinstance(exc, NotFound) else
              403 if isinstance(exc, PermissionDenied) else 400)
    body = {"error": "Nothing here, or nothing you may see." if status == 404 else str(exc)}
    if isinstance(exc, upload_jobs.UploadConflict):
        body["received"] = exc.received
    return jsonify(body), status


# Flask looks for a handler of the exact class first: these must be the blueprint's too.
for _error in (NotFound, PermissionDenied):
    blueprint.register_error_handler(_error, refused)


def upload_json(name: str, row: dict) -> dict:
    return {**uploads_store.to_json(row),
            "chunk_bytes": config().backup.upload_chunk_bytes,
            "status_url": url_for("uploads.status", name=name, upload_id=row["id"]),
            "chunks_url": url_for("uploads.chunks", name=name, upload_id=row["id"]),
            "import_url": url_for("uploads.import_file", name=name, upload_id=row["id"])}


def _int(value, what: str) -> int:
    text = str(value if value is not None else "")
    if not text.isascii() or not text.isdigit():
        raise UserError(f"{what} must be a whole number of bytes")
    return int(text)


@blueprint.post("/projects/<name>/uploads")
@guard.project("backup_restore", policy.ANY_STAGE)
def start(name: str):
    fields = request.get_json(silent=True) or request.form
    size = _int(fields.get("size"), "size")
    with db().transaction() as conn:
        project = visible_project(conn, name)
    row = upload_jobs.begin(services(), project, current_user(), str(fields.get("name", "")),
                            size, fields.get("sha256") or None)
    return jsonify(upload_json(name, row)), 201


@blueprint.get("/projects/<name>/uploads/<upload_id>")
@guard.project("backup_restore", policy.ANY_STAGE)
def status(name: str, upload_id: str):
    with db().transaction() as conn:
        project = visible_project(conn, name)
        row = uploads_store.get(conn, upload_id, project=project, user=current_user())
    return jsonify(upload_json(name, row))


@blueprint.post("/projects/<name>/uploads/<upload_id>/chunks")
@guard.project("backup_restore", policy.ANY_STAGE)
def chunks(name: str, upload_id: str):
    offset = _int(request.args.get("offset"), "offset")
    length = request.content_length
    if length is None:
        raise UserError("a piece must say its length (Content-Length)")
    most = config().backup.upload_chunk_bytes
    if length > most:
        raise upload_jobs.UploadTooLarge(f"a piece may have at most {most} bytes "
                                         "([backup] upload_chunk_bytes)")
    with db().transaction() as conn:
        project = visible_project(conn, name)
    row = upload_jobs.append(services(), project, current_user(), upload_id, offset, length,
                             request.stream)
    return jsonify(upload_json(name, row))


@blueprint.post("/projects/<name>/uploads/<upload_id>/import")
@guard.project("backup_restore", policy.ANY_STAGE)
def import_file(name: str, upload_id: str):
    branch_name = (request.get_json(silent=True) or request.form).get("branch", "")
    with db().transaction() as conn:
        project = visible_project(conn, name)
        row = uploads_store.get(conn, upload_id, project=project, user=current_user())
        if row["state"] != "complete":
            raise upload_jobs.UploadConflict(
                f"the upload is {row['state']}: {row['received']} of {row['size']} bytes "
                "have arrived", row["received"])
        try:
            branch = store_projects.get_branch(conn, project, branch_name)
        except NotFound as exc:  # chosen in the form: a mistake to show
            raise UserError(str(exc)) from None
        policy.require(conn, current_user(), project, "backup_restore", branch["stage"])
    from appliance.jobs import restores
    build = restores.request_import(services(), project,
                                    upload_jobs.data_path(config(), upload_id), row["name"],
                                    branch_name, current_user(), remove_after=True)
    with db().transaction() as conn:
        uploads_store.imported(conn, upload_id, build["id"])
    log.info("%s imports %s into %s/%s: build #%d", current_user()["name"], row["name"],
             name, branch_name, build["id"])
    page = url_for("builds.build", build_id=build["id"])
    if request.is_json or request.accept_mimetypes.best == "application/json":
        return jsonify(build_id=build["id"], page=page)
    return redirect(page, code=303)
