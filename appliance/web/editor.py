"""A build's Editor tab: its source tree, a file in a code editor, save, restart the
server, update the open file's module, commit and push.

Every view has the same shape: load the build, ask the policy (appliance.jobs.editor,
which the guard has asked already for the route), act or render. The path of a file or
folder travels in the query string or the form (`path`), relative to the tree's root;
runtime.source_tree decides what it may name. The page works without JavaScript (a
textarea and plain forms); editor.js turns the textarea into CodeMirror.
"""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance.errors import NotFound, PermissionDenied, UserError
from appliance.jobs import editor as jobs
from appliance.runtime import source_tree
from appliance.web import guard
from appliance.web.common import current_user, db, refusals_back_to, services

log = logging.getLogger(__name__)

blueprint = Blueprint("editor", __name__)

# What a form's `newline` field says the file used: a browser sends a textarea's lines
# ended by CRLF whatever they were, so they are put back as the file had them.
NEWLINES = {"lf": "\n", "crlf": "\r\n"}
TASK_LABELS = {"restart_server": "Restart of the server",
               "update_module": "Update of module {module}"}


def editor_page(build_id: int) -> str:
    """The page a form of the editor came from (its `path` kept)."""
    path = request.form.get("path") or None
    return url_for("editor.editor", build_id=build_id, path=path)


def _target(build_id: int, write: bool = False) -> jobs.Target:
    with db().transaction() as conn:
        target = jobs.load(conn, build_id)
        jobs.require(conn, current_user(), target, write=write)
    return target


def _render(target: jobs.Target, path: str | None, status: int = 200, **overrides):
    svc = services()
    view = jobs.page(svc, target, path)
    with db().transaction() as conn:
        task = last_task(conn, target.build["id"])
    changed = sorted(jobs.changes(svc, target)) if view.read_only is None else []
    opened = view.file
    return render_template(
        "editor.html", build=target.build, project=target.project, branch=target.branch,
        view=view, opened=opened, changed=changed, task=task, task_label=task_label,
        text=overrides.get("text", opened.text if opened else None),
        digest=overrides.get("digest", opened.digest if opened else ""),
        newline="crlf" if opened and opened.text and "\r\n" in opened.text else "lf",
        error=overrides.get("error"), editor_tab=True,
        max_bytes=svc.config.editor.max_file_bytes), status


@blueprint.get("/builds/<int:build_id>/editor")
@guard.project("editor")
def editor(build_id: int):
    return _render(_target(build_id), request.args.get("path"))


@blueprint.post("/builds/<int:build_id>/editor/save")
@guard.project("editor")
@refusals_back_to(editor_page)
def save(build_id: int):
    path = request.form.get("path", "")
    newline = NEWLINES.get(request.form.get("newline", "lf"), "\n")
    text = request.form.get("content", "").replace("\r\n", "\n").replace("\n", newline)
    try:
        jobs.save(services(), current_user(), build_id, path, text,
                  request.form.get("digest") or None)
    except (NotFound, PermissionDenied):
        raise
    except UserError as exc:
        # Shown with the text as typed, so nothing typed is lost to a refusal.
        log.info("refused saving %s in build #%s: %s", path, build_id, exc)
        target = _target(build_id)
        status = 409 if isinstance(exc, source_tree.Changed) else 400
        current = _current_digest(target, path)
        return _render(target, path, status, text=text, digest=current, error=str(exc))
    flash(f"Saved {path}.")
    return redirect(url_for("editor.editor", build_id=build_id, path=path), code=303)


def _current_digest(target: jobs.Target, path: str) -> str:
    """The digest of the file as it is now: saving the page shown after a refusal
    replaces it (the page says so)."""
    view = jobs.page(services(), target, path)
    return view.file.digest if view.file else ""


@blueprint.post("/builds/<int:build_id>/editor/restart")
@guard.project("editor")
@refusals_back_to(editor_page)
def restart(build_id: int):
    jobs.request(services(), current_user(), build_id, "restart_server")
    flash("The server is restarting.")
    return redirect(editor_page(build_id), code=303)


@blueprint.post("/builds/<int:build_id>/editor/update")
@guard.project("editor")
@refusals_back_to(editor_page)
def update(build_id: int):
    task = jobs.request(services(), current_user(), build_id, "update_module",
                        request.form.get("path", ""))
    flash(f"Module {task['module']} is being updated; the server restarts after it.")
    return redirect(editor_page(build_id), code=303)


@blueprint.post("/builds/<int:build_id>/editor/commit")
@guard.project("editor")
@refusals_back_to(editor_page)
def commit(build_id: int):
    made, lines = jobs.commit(services(), current_user(), build_id,
                              request.form.get("message", ""))
    flash(f"Committed {made.sha[:10]} and pushed. " + " ".join(lines))
    return redirect(editor_page(build_id), code=303)


@blueprint.get("/builds/<int:build_id>/editor/task")
@guard.project("editor")
def task(build_id: int):
    """The editor's last task on the build (htmx polls it while it runs)."""
    _target(build_id)
    with db().transaction() as conn:
        found = last_task(conn, build_id)
    return render_template("_editor_task.html", build_id=build_id, task=found,
                           task_label=task_label)


def last_task(conn, build_id: int) -> dict | None:
    return conn.execute("""SELECT * FROM tasks WHERE build_id = %s AND kind = ANY(%s)
                           ORDER BY id DESC LIMIT 1""", (build_id, list(jobs.TASKS))).fetchone()


def task_label(task: dict) -> str:
    return TASK_LABELS[task["kind"]].format(module=task.get("module") or "")
