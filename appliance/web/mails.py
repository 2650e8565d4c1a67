"""Caught mail: a branch's Mails tab, one message's page, its HTML in a sandbox, its
attachments and raw bytes as downloads, and releasing it to a real address.

A caught message is untrusted: code under test wrote it, and anyone may have put HTML in
it. Its HTML is only served from /mails/<id>/html into an iframe whose sandbox allows
neither scripts nor the page's origin, under a Content-Security-Policy of its own
(nothing loads but the document; remote images only when the reader asks). Attachments
and the raw message are downloads, never rendered. The server fetches nothing a message
points at.
"""

from __future__ import annotations

import io
import logging
import math
import re

from flask import (Blueprint, abort, flash, jsonify, redirect, render_template, request,
                   send_file, url_for)

from appliance import policy
from appliance import mime
from appliance.errors import SystemFailure
from appliance.jobs import mail as mail_jobs
from appliance.store import mails as store_mails
from appliance.store import projects as store_projects
from appliance.web import guard
from appliance.web.common import (current_user, db, is_htmx, refusals_back_to, render,
                                  require_access, services, visible_branch, visible_project)

log = logging.getLogger(__name__)

blueprint = Blueprint("mails", __name__)

# The message's HTML: sandboxed (no scripts, an opaque origin), nothing loaded but the
# document itself (inline styles; inline images and fonts as data: URIs).
HTML_POLICY = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
               "font-src data:; frame-ancestors 'self'")
# Remote images tell the sender that the message was read: only when the reader asks.
# Still no scripts, no connections, no frames.
HTML_POLICY_REMOTE = HTML_POLICY.replace("img-src data:", "img-src data: https: http:")
# Set here, so that the app's defaults (DENY, its own CSP) do not replace them.
HTML_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
# The message page's views, in the order of its tabs.
VIEWS = (("html", "HTML"), ("text", "Text"), ("headers", "Headers"),
         ("attachments", "Attachments"), ("raw", "Raw"))
# The Raw view shows at most this much of a message; the .eml download has all of it.
RAW_SHOWN_BYTES = 256 * 1024
# Characters a downloaded file's name may not have (paths, controls, quotes): made '_'.
UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def visible_mail(conn, mail_id: int) -> tuple[dict, dict]:
    """The message and its project if the current user may see them; NotFound otherwise."""
    mail = store_mails.get_mail(conn, mail_id)
    project = store_projects.project_by_id(conn, mail["project_id"])
    require_access(conn, project)
    return mail, project


def safe_filename(name: str, fallback: str) -> str:
    """A name to save a file under: no path, no control characters, never empty."""
    name = UNSAFE_FILENAME.sub("_", name).strip(" ._")[:200]
    return name or fallback


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else None


# The Mails tab of a branch

def list_query() -> dict:
    """What the Mails tab shows: a search, a build, a page (all from the URL, to share)."""
    return {"search": request.args.get("q", "").strip(), "build_id": _int_arg("build"),
            "page": max(_int_arg("page") or 1, 1)}


def branch_tab(name: str, branch: str, tabs):
    """The branch page's Mails tab; for htmx, the list alone, or 204 when nothing is new
    since the `since` id it was rendered with (a poll that finds nothing costs one query)."""
    query = list_query()
    since = _int_arg("since")
    with db().transaction() as conn:
        project, row = visible_branch(conn, name, branch)
        policy.require(conn, current_user(), project, "mails", row["stage"])
        newest = store_mails.newest_id(conn, branch_id=row["id"], build_id=query["build_id"])
        if is_htmx() and since is not None and since == newest:
            return "", 204
        mails = store_mails.list_mails(conn, branch_id=row["id"], **query)
        total = store_mails.count_mails(conn, branch_id=row["id"], search=query["search"],
                                        build_id=query["build_id"])
    return render("branch.html", "_mail_list.html", project=project, branch=row, tab="mails",
                  tabs=tabs, mails=mails, total=total, newest=newest, search=query["search"],
                  build_id=query["build_id"], page_no=query["page"],
                  pages=max(math.ceil(total / store_mails.PAGE_SIZE), 1))


# One message

@blueprint.get("/mails/<int:mail_id>")
@guard.project("mails")
def mail(mail_id: int):
    with db().transaction() as conn:
        mail, project = visible_mail(conn, mail_id)
    readable = mime.read(mail["raw"], malformed=mail["malformed"])
    views = [(key, label) for key, label in VIEWS
             if not readable.malformed or key == "raw"]
    view = request.args.get("view") or ("html" if readable.html is not None else
                                         "raw" if readable.malformed else "text")
    if view not in dict(views):
        abort(404)
    raw_shown = mail["raw"][:RAW_SHOWN_BYTES] if view == "raw" else b""
    return render_template("mail.html", mail=mail, project=project, readable=readable,
                  views=views, view=view, raw_text=mime.raw_text(raw_shown),
                  raw_cut=len(mail["raw"]) > RAW_SHOWN_BYTES, raw_label=mime.RAW_LABEL,
                  remote=request.args.get("remote") == "1")


@blueprint.get("/mails/<int:mail_id>/html")
@guard.project("mails")
def html(mail_id: int):
    with db().transaction() as conn:
        mail, _project = visible_mail(conn, mail_id)
    document = mime.html_document(mail["raw"], malformed=mail["malformed"])
    if document is None:
        abort(404)
    policy = HTML_POLICY_REMOTE if request.args.get("remote") == "1" else HTML_POLICY
    headers = {**HTML_HEADERS, "Content-Security-Policy": policy}
    return document, 200, {"Content-Type": "text/html; charset=utf-8", **headers}


@blueprint.get("/mails/<int:mail_id>/attachments/<int:index>")
@guard.project("mails")
def attachment(mail_id: int, index: int):
    with db().transaction() as conn:
        mail, _project = visible_mail(conn, mail_id)
    found = mime.attachment(mail["raw"], index, malformed=mail["malformed"])
    if found is None:
        abort(404)
    part, data = found
    name = safe_filename(part.filename, f"mail-{mail_id}-part-{index + 1}.bin")
    return _download(data, "application/octet-stream", name)


@blueprint.get("/mails/<int:mail_id>/raw")
@guard.project("mails")
def raw(mail_id: int):
    with db().transaction() as conn:
        mail, _project = visible_mail(conn, mail_id)
    return _download(mail["raw"], "message/rfc822", f"mail-{mail_id}.eml")


def _download(data: bytes, mimetype: str, name: str):
    """Bytes to save, never to show: attachment, nosniff, not cached."""
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True,
                         download_name=name, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def mail_page(mail_id: int) -> str:
    return url_for("mails.mail", mail_id=mail_id)


@blueprint.post("/mails/<int:mail_id>/release")
@guard.project("mails")
@refusals_back_to(mail_page)
def release(mail_id: int):
    address = request.form.get("address", "").strip()
    with db().transaction() as conn:
        visible_mail(conn, mail_id)
    try:
        mail_jobs.release(services(), mail_id, address, current_user())
    except SystemFailure as exc:  # not a refusal: the relay failed, the person may retry
        log.warning("releasing mail #%d to %s failed: %s", mail_id, address, exc)
        flash(f"The relay did not take the message: {exc}", "error")
    else:
        flash(f"Mail #{mail_id} sent to {address}.")
    return redirect(mail_page(mail_id), code=303)


# JSON twins

def mail_json(mail: dict) -> dict:
    return {**store_mails.to_json(mail), "page": url_for("mails.mail", mail_id=mail["id"]),
            "raw": url_for("mails.raw", mail_id=mail["id"])}


@blueprint.get("/api/projects/<name>/mails")
@guard.project("mails", policy.ANY_STAGE)
def api_list(name: str):
    """The project's caught mail, newest first; ?branch=, ?build=, ?q=, ?page= narrow it.
    Only the mail of builds on stages the user may read mail of (the route lets in whoever
    may on one stage at least)."""
    query = list_query()
    user = current_user()
    with db().transaction() as conn:
        project = visible_project(conn, name)
        branch_id = None
        if request.args.get("branch"):
            branch = store_projects.get_branch(conn, project, request.args["branch"])
            policy.require(conn, user, project, "mails", branch["stage"])
            branch_id = branch["id"]
        readable = [stage for stage in policy.STAGES
                    if policy.allows(conn, user, project, "mails", stage)]
        rows = store_mails.list_mails(conn, project_id=project["id"], branch_id=branch_id,
                                      stages=readable, **query)
    return jsonify([mail_json(row) for row in rows])


@blueprint.get("/api/mails/<int:mail_id>")
@guard.project("mails")
def api_mail(mail_id: int):
    with db().transaction() as conn:
        mail, _project = visible_mail(conn, mail_id)
    readable = mime.read(mail["raw"], malformed=mail["malformed"])
    return jsonify({**mail_json(mail), "headers": readable.headers,
                    "text": readable.text, "has_html": readable.html is not None,
                    "attachments": [{"index": a.index, "filename": a.filename,
                                     "content_type": a.content_type, "size": a.size,
                                     "inline": a.inline, "content_id": a.content_id,
                                     "url": url_for("mails.attachment", mail_id=mail_id,
                                                    index=a.index)}
                                    for a in readable.attachments]})
