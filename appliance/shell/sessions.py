"""Open and close a terminal on a build for a user: the one entry point the browser's
WebSocket and SSH share.

open_terminal checks, in this order, before any process starts: the user may open a
shell on the build's stage (appliance.policy, action "shell"), the build is running,
and its server container runs. The terminal then runs as the container's own user with
the build's environment (psql reaches the build's database with no arguments, the Odoo
config is the build's, history files in /tmp), a control token that lets odoo-update
and odoo-restart act as this user while the terminal is open, a row in shell_sessions
and a line in the branch's history. A production terminal is recorded (shell.cast).
An open terminal is closed when its user is disabled or loses the right (revoked).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from appliance import policy
from appliance.errors import DockerError, NotFound, PermissionDenied, UserError
from appliance.jobs import containers
from appliance.runtime import docker_exec
from appliance.runtime.image_recipes import SHELL_RC, USER_HOME
from appliance.shell import cast
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store
from appliance.store import shell as shell_store
from appliance.store import users as users_store
from appliance.store.states import BuildState

log = logging.getLogger(__name__)

TERM = "xterm-256color"
CONTROL_TOKEN_NAME = "APPLIANCE_SHELL_TOKEN"
# Stages whose terminals are recorded.
RECORDED_STAGES = ("production",)
# An open terminal is checked this often (seconds) against the store: see revoked().
RECHECK_SECONDS = 5


class NotRunning(UserError):
    """The build has no server to open a terminal in."""


@dataclass(eq=False)
class Terminal:
    """An open terminal: the process side (`pty`), its session row, and what it runs on."""
    pty: docker_exec.PtyExec
    session: dict
    build: dict
    project: dict
    user: dict | None
    token: str = ""  # its control token (CONTROL_TOKEN_NAME in its environment)
    recorder: cast.Recorder | None = None
    closed: bool = field(default=False)


def check(conn, svc, user: dict | None, build_id: int) -> tuple[dict, dict]:
    """The build and its project if `user` may open a terminal on it now; NotFound,
    PermissionDenied or NotRunning (with the reason) otherwise."""
    build = builds_store.get_build(conn, build_id)
    project = projects_store.project_by_id(conn, build["project_id"])
    if user is None:
        raise NotFound(f"no build #{build_id}")
    policy.require(conn, user, project, "shell", build["stage"])
    if build["state"] != BuildState.RUNNING or build.get("asleep"):
        raise NotRunning(f"build #{build_id} is {build['state']}: a shell needs its "
                         "server running (start it from the build's page)")
    return build, project


def server_container(svc, build_id: int):
    found = [c for c in svc.docker.find(build_id=build_id, role="server") if c.running]
    if not found:
        raise NotRunning(f"build #{build_id} has no running server container")
    return found[0]


def environment(svc, project: dict, build: dict, control_token: str) -> dict[str, str]:
    """What the terminal's processes see: no password (psql's wrapper in the image reads
    it from the build's odoo.conf, readable by the container's user alone)."""
    env = {
        "TERM": TERM, "HOME": USER_HOME, "SHELL": "/bin/bash", "LANG": "C.UTF-8",
        "ODOO_RC": containers.CONF_PATH,
        "PGHOST": svc.config.database.socket_dir, "PGUSER": project["db_role"],
        "HISTFILE": "/tmp/.bash_history", "PSQL_HISTORY": "/tmp/.psql_history",
        "LESSHISTFILE": "-",
        "APPLIANCE_BUILD": str(build["id"]), "APPLIANCE_STAGE": build["stage"],
        "APPLIANCE_NAME": name(project, build),
        CONTROL_TOKEN_NAME: control_token,
    }
    if build.get("database"):
        env["PGDATABASE"] = build["database"]
    return env


def name(project: dict, build: dict) -> str:
    """What the prompt and a recording's title call the build: acme/main#12."""
    branch = build.get("branch_name")
    return f"{project['name']}/{branch}#{build['id']}" if branch else \
        f"{project['name']}#{build['id']}"


def command() -> list[str]:
    """bash with the appliance's rc file (the prompt names the build; odoo-* commands)."""
    return ["bash", "--rcfile", SHELL_RC, "-i"]


def open_terminal(svc, user: dict | None, build_id: int, rows: int, cols: int,
                  channel: str) -> Terminal:
    """Check, start the terminal, record it. Nothing starts when a check fails."""
    rows, cols = docker_exec.check_size(rows, cols)  # ValueError: a silly size
    with svc.db.transaction() as conn:
        build, project = check(conn, svc, user, build_id)
        branch = conn.execute("SELECT name FROM branches WHERE id = %s",
                              (build["branch_id"],)).fetchone()
        build = {**build, "branch_name": branch["name"] if branch else ""}
    container = server_container(svc, build_id)
    token = secrets.token_urlsafe(32)
    pty = docker_exec.open(container.id, f"{svc.config.runtime.uid}:{svc.config.runtime.uid}",
                           command(), environment(svc, project, build, token), rows, cols,
                           workdir=USER_HOME)
    recorded = build["stage"] in RECORDED_STAGES
    try:
        with svc.db.transaction() as conn:
            session = shell_store.start_session(conn, build, user, channel, token,
                                                recorded, pty.marker)
        recorder = (cast.Recorder.create(svc.config, session["id"], rows, cols,
                                         title=name(project, build))
                    if recorded else None)
    except BaseException:
        pty.close()
        raise
    log.info("shell #%s opened on build #%s by %s (%s)", session["id"], build_id,
             user["name"] if user else "the appliance", channel)
    return Terminal(pty, session, build, project, user, token, recorder)


def revoked(svc, terminal: Terminal) -> str | None:
    """Why an open terminal must close now, in words for its notice: its session was
    ended, its user disabled, or no longer allowed a shell on the build's stage (removed
    from the project, a new role or permission). None while it may stay open. The
    browser's and SSH's sides ask this every RECHECK_SECONDS."""
    with svc.db.transaction() as conn:
        session = shell_store.get_session(conn, terminal.session["id"])
        if session is None or session["ended_at"] is not None:
            return "this terminal's session has ended"
        if terminal.user is None:  # the appliance's own
            return None
        user = users_store.get_user(conn, terminal.user["id"])
        if not users_store.is_active(user):
            return "the account is disabled"
        project = projects_store.project_by_id(conn, terminal.project["id"])
        try:
            policy.require(conn, user, project, "shell", terminal.build["stage"])
        except (NotFound, PermissionDenied):
            return "a shell on this build is no longer allowed to this account"
    return None


def close_terminal(svc, terminal: Terminal) -> None:
    """End its processes, its recording and its session (with its duration in the
    history). Safe to call twice."""
    if terminal.closed:
        return
    terminal.closed = True
    try:
        terminal.pty.close()
    except Exception:  # the session must still be ended in the store
        log.exception("shell #%s: ending its processes failed", terminal.session["id"])
    finally:
        if terminal.recorder is not None:
            terminal.recorder.close()
        with svc.db.transaction() as conn:
            shell_store.end_session(conn, terminal.session["id"])
        log.info("shell #%s on build #%s closed", terminal.session["id"],
                 terminal.build["id"])


def end_abandoned(svc) -> int:
    """At start-up: browser sessions a previous run of the daemon left open are over;
    their processes, still in their containers, are ended too."""
    with svc.db.transaction() as conn:
        sessions = shell_store.open_sessions(conn, "browser")
        for session in sessions:
            shell_store.end_session(conn, session["id"])
        shell_store.prune_tickets(conn)
    user = f"{svc.config.runtime.uid}:{svc.config.runtime.uid}"
    for session in sessions:
        for container in svc.docker.find(build_id=session["build_id"], role="server"):
            if container.running and session["marker"]:
                try:
                    docker_exec.end_session(svc.docker.client, container.id, user,
                                            session["marker"])
                except DockerError as exc:
                    log.warning("shell #%s: its processes could not be ended: %s",
                                session["id"], exc)
    return len(sessions)
