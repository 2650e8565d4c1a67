"""What odoo-restart and odoo-update, asked through a build's control socket, do.

Both act as the person whose terminal asked (its token names an open session of this
build), who must still be allowed a shell and a rebuild on the build's stage.

- odoo-restart: the server is stopped and started again (its health checked), as from
  the build's page; the terminal, which runs in that server's container, closes.
- odoo-update MODULES on development and staging: `-u MODULES` in a one-off container
  on the build's database while its server still serves, the output streamed to the
  terminal (and appended to update.log); if it succeeds, the server restarts as above;
  if it fails, the server keeps serving as it was.
- odoo-update MODULES on production: never in place. A production build of the
  revision that serves is queued with the modules to update, and the production
  pipeline runs it: maintenance, snapshot, update backup, `-u`, start, health, and
  on any failure the snapshot is put back and the previous build serves again.
"""

from __future__ import annotations

import logging
import threading

from appliance import layout, policy
from appliance.errors import ApplianceError, UserError
from appliance.jobs import common, containers
from appliance.runtime import odoo
from appliance.shell.control import Request
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store import shell as shell_store
from appliance.store import users as users_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

EVENT_KIND = "shell_command"

_busy: set[int] = set()
_busy_lock = threading.Lock()


class Refused(UserError):
    """The request is not allowed now."""


def perform(svc, build_id: int, request: Request, say) -> None:
    """Answer one request on the build's control socket; say(message) reports."""
    user, project, build = authorise(svc, build_id, request.token)
    who = user["name"]
    if request.action == "restart":
        _start_in_background(svc, build, "restart",
                             lambda: restart(svc, project, build, f"odoo-restart by {who}"))
        say(f"restarting the server of build #{build_id}: this terminal closes; open it "
            "again once the build runs (a few seconds)")
        _event(svc, build, user, f"odoo-restart from the shell by {who}")
    elif build["stage"] == "production":
        queued = queue_production_update(svc, project, build, user, request.modules)
        say(f"production is updated only through its pipeline: build #{queued['id']} is "
            f"queued to update {', '.join(request.modules)} (snapshot first, rolled back "
            f"on failure): {layout.build_page(svc.config, queued['id'])}")
    else:
        update_here(svc, project, build, user, request.modules, say)


def authorise(svc, build_id: int, token: str) -> tuple[dict, dict, dict]:
    """The terminal's user, the project and the build, if the token names an open
    terminal of this build whose user may still do this on a running build of a project
    that is not archived."""
    with svc.db.transaction() as conn:
        session = shell_store.session_by_control(conn, build_id, token)
        if session is None or session["user_id"] is None:
            raise Refused("this terminal's token is not one of this build's open "
                          "terminals: open a new terminal")
        user = users_store.get_user(conn, session["user_id"])
        build = builds_store.get_build(conn, build_id)
        project = projects_store.project_by_id(conn, build["project_id"])
        policy.require(conn, user, project, "shell", build["stage"])
        policy.require(conn, user, project, "rebuild", build["stage"])
        if project.get("archived_at") is not None:  # its servers are being stopped
            raise Refused(f"{project['name']} is archived: its servers stay stopped")
        if build["state"] != BuildState.RUNNING:
            raise Refused(f"build #{build_id} is {build['state']}, not running")
    return user, project, build


def _start_in_background(svc, build: dict, what: str, work) -> None:
    with _busy_lock:
        if build["id"] in _busy:
            raise Refused(f"build #{build['id']} is already being updated or restarted")
        _busy.add(build["id"])

    def run():
        try:
            work()
        except ApplianceError as exc:
            log.warning("build #%s: %s from the shell failed: %s", build["id"], what, exc)
            _event(svc, build, None, f"{what} from the shell failed: {exc}")
        except Exception:  # a thread of its own: log it, nobody else will
            log.exception("build #%s: %s from the shell failed", build["id"], what)
        finally:
            with _busy_lock:
                _busy.discard(build["id"])

    threading.Thread(target=run, name=f"shell-{what}-{build['id']}", daemon=True).start()


def restart(svc, project: dict, build: dict, reason: str) -> None:
    """Stop the build's server and start it again, health checked."""
    containers.stop_server(svc, build, f"server restarted: {reason}")
    with svc.db.transaction() as conn:
        stopped = builds_store.get_build(conn, build["id"])
    containers.serve(svc, containers.stored_setup(svc, project, stopped))


def update_here(svc, project: dict, build: dict, user: dict, modules: tuple[str, ...],
                say) -> None:
    """-u MODULES on a development or staging build, then a restart."""
    with _busy_lock:
        if build["id"] in _busy:
            raise Refused(f"build #{build['id']} is already being updated or restarted")
        _busy.add(build["id"])
    names = ", ".join(modules)
    try:
        say(f"updating {names} on build #{build['id']} (the server serves meanwhile; "
            "the output also goes to update.log)")
        setup = containers.stored_setup(svc, project, build)
        command = odoo.update_command(**containers.common_args(svc, setup),
                                      modules=list(modules), test_enable=False)
        code = common.run_oneoff(svc, setup, command, "update", on_line=say)
        verdict = odoo.classify(common.read_log(setup.paths, "update"), code,
                                svc.config.builds.warning_ignore)
    finally:
        with _busy_lock:
            _busy.discard(build["id"])
    if code != 0 or verdict.result == "failure":
        reason = verdict.reason or f"exit code {code}"
        _event(svc, build, user, f"odoo-update {names} from the shell failed: {reason}")
        raise Refused(f"the update failed ({reason}): the server keeps serving as it was")
    _event(svc, build, user, f"odoo-update {names} from the shell by {user['name']}")
    _start_in_background(svc, build, "restart", lambda: restart(
        svc, project, build, f"odoo-update {names} by {user['name']}"))
    say("updated; restarting the server: this terminal closes, open it again in a few "
        "seconds")


def queue_production_update(svc, project: dict, build: dict, user: dict,
                            modules: tuple[str, ...]) -> dict:
    """A production build of the serving revision that also updates `modules`."""
    with svc.db.transaction() as conn:
        branch = conn.execute("SELECT * FROM branches WHERE id = %s FOR UPDATE",
                              (build["branch_id"],)).fetchone()
        if builds_store.branch_busy(conn, branch["id"], lock=True):
            raise Refused(f"{branch['name']} is deploying: wait for it to end")
        queued = builds_store.enqueue(conn, project=project, branch=branch,
                                      commit=build["commit"],
                                      message=build["commit_message"] or "",
                                      author=build["author"] or "", user_id=user["id"],
                                      trigger="shell")
        conn.execute("UPDATE builds SET update_modules = %s WHERE id = %s",
                     (list(modules), queued["id"]))
        builds_store.add_event(conn, project_id=project["id"], branch_id=branch["id"],
                               build_id=queued["id"], user_id=user["id"], kind=EVENT_KIND,
                               message=f"odoo-update {', '.join(modules)} from the shell: "
                                       f"build #{queued['id']} queued",
                               data={"modules": list(modules), "from_build": build["id"]})
    log.info("%s asked from the shell to update %s on production of %s: build #%s",
             user["name"], ",".join(modules), project["name"], queued["id"])
    return queued


def _event(svc, build: dict, user: dict | None, message: str) -> None:
    with svc.db.transaction() as conn:
        builds_store.add_event(conn, project_id=build["project_id"],
                               branch_id=build["branch_id"], build_id=build["id"],
                               user_id=user["id"] if user else None, kind=EVENT_KIND,
                               message=message)
