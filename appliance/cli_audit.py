"""The command line's part of the audit trail: `appliance ...` commands that may change
something leave a row when they end (cli.main wraps every run in `recorded`).

Who: the user named by --as, else the system account that ran it (and the one behind
sudo); from where: the SSH client's address when run over SSH, else "local"; what: the
command's path (`cli.project create`); the outcome: its exit code and, for a refusal,
the reason; the details: its parameters that are known to be safe (store.audit.clean).
A command that changes nothing is not recorded (NOT_RECORDED); a new command is recorded
until it is listed there. The row is written on a connection of its own, after the
command: a trail that cannot be written (no database yet) is a warning, never the
command's failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd

import click

from appliance import config as config_mod
from appliance.errors import ApplianceError, NotFound, PermissionDenied, UserError
from appliance.store import audit

log = logging.getLogger(__name__)

# Command paths that change nothing, or whose effects are recorded where they happen.
NOT_RECORDED = {
    ("serve",): "the daemon itself",
    ("doctor",): "checks only",
    ("project", "list"): "reads", ("build", "list"): "reads", ("build", "wait"): "reads",
    ("logs",): "reads", ("mail", "list"): "reads", ("mail", "show"): "reads",
    ("backup", "list"): "reads", ("backup", "download"): "reads",
    ("backup", "target", "list"): "reads", ("key", "list"): "reads",
    ("ssh-keys",): "sshd asks it at every connection attempt",
    ("ssh-command",): "an SSH session: its pushes and shells are recorded by what they do",
}


def _option(command: click.Command, token: str) -> click.Option | None:
    name = token.split("=", 1)[0]
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def resolve(root: click.Group, argv: list[str]) -> tuple[tuple[str, ...], click.Command,
                                                         list[str], dict]:
    """(the command's path, the command, its own arguments, the groups' options that
    take a value) read from argv the way click will, without running anything."""
    path: list[str] = []
    command, rest, options = root, list(argv), {}
    while isinstance(command, click.Group):
        index, found = 0, None
        while index < len(rest):
            token = rest[index]
            if token == "--":
                break
            if token.startswith("-") and token != "-":
                option = _option(command, token)
                takes_value = option is not None and not option.is_flag and not option.count
                if takes_value and "=" in token:
                    options[option.name] = token.split("=", 1)[1]
                elif takes_value and index + 1 < len(rest):
                    options[option.name] = rest[index + 1]
                    index += 1
                index += 1
                continue
            found = token
            break
        if found is None or found not in command.commands:
            break
        path.append(found)
        command, rest = command.commands[found], rest[index + 1:]
    return tuple(path), command, rest, options


def parameters(command: click.Command, name: str, args: list[str]) -> dict:
    """The command's parameters as click parses them (no prompt, no callback); {} when
    they do not parse (click then refuses the run itself)."""
    try:
        with command.make_context(name, list(args), resilient_parsing=True) as ctx:
            return dict(ctx.params)
    except (click.ClickException, click.exceptions.Exit):
        return {}


def operator() -> str:
    """The system account running the command (and the one behind sudo)."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid {os.geteuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo: {sudo})" if sudo and sudo != name else name


def origin() -> str:
    """The SSH client's address when the command runs in an SSH session, else local."""
    connection = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT") or ""
    return connection.split()[0] if connection.split() else "local"


def ending(exc: BaseException | None) -> tuple[int, str, str]:
    """(exit status, outcome, reason) of a run that ended with `exc` (None: normally)."""
    if exc is None:
        return 0, "ok", ""
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return 0, "ok", ""
        return code, "refused", "usage error" if code == 2 else ""
    if isinstance(exc, NotFound):
        return 1, "not_found", str(exc)
    if isinstance(exc, PermissionDenied):
        return 1, "denied", str(exc)
    if isinstance(exc, UserError):
        return 1, "refused", str(exc)
    if isinstance(exc, ApplianceError):
        return 3, "error", str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return 130, "error", "interrupted"
    return 1, "error", f"{exc.__class__.__name__}: {exc}"


@contextlib.contextmanager
def recorded(root: click.Group, argv: list[str]):
    """Run the body (the command) and record how it ended, if it is worth a row."""
    path, command, rest, options = resolve(root, argv)
    if (not path or isinstance(command, click.Group) or path in NOT_RECORDED
            or "--help" in rest):
        yield
        return
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:  # recorded below, then raised again unchanged
        failure = exc
        raise
    finally:
        _write(path, parameters(command, path[-1], rest), options, ending(failure))


def _write(path, params: dict, options: dict, end: tuple[int, str, str]) -> None:
    from appliance.store.db import Database  # the CLI imports the store lazily too
    status, outcome, reason = end
    try:
        cfg = config_mod.load(options.get("config_path"))
        db = Database(cfg.database, max_size=1).open()
    except ApplianceError as exc:
        log.warning("the audit trail was not written (%s)", exc)
        return
    try:
        with db.transaction() as conn:
            user, project, build_id = _subjects(conn, path, options.get("acting_as"), params)
            details = audit.clean(params)
            details["operator"] = operator()
            audit.record(conn, source="cli", action="cli." + " ".join(path), outcome=outcome,
                         user=user, user_name=None if user else operator(), address=origin(),
                         project=project, branch=params.get("branch") or "",
                         build_id=build_id, status=status, reason=reason, details=details)
    except Exception as exc:  # e.g. a state database not migrated yet
        log.warning("the audit trail was not written: %s", exc)
    finally:
        db.close()


def _subjects(conn, path: tuple[str, ...], acting_as: str | None, params: dict):
    """The --as user, and the project and build the parameters name (when they exist):
    `name` is a project's only in the project commands (elsewhere a user's, a target's)."""
    user = None
    if acting_as:
        user = conn.execute("SELECT * FROM users WHERE name = %s", (acting_as,)).fetchone()
    build_id = params.get("build_id") if isinstance(params.get("build_id"), int) else None
    project = None
    keys = ("project_name", "name", "new_name") if path[0] == "project" else ("project_name",)
    for key in keys:
        value = params.get(key)
        if isinstance(value, str) and value:
            project = conn.execute("SELECT * FROM projects WHERE name = %s",
                                   (value,)).fetchone()
            if project:
                break
    if project is None and build_id is not None:
        project = conn.execute("""SELECT p.* FROM projects p JOIN builds b
                                  ON b.project_id = p.id WHERE b.id = %s""",
                               (build_id,)).fetchone()
    return user, project, build_id
