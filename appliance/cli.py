"""`appliance ...`: the command line. Every command takes --config (or APPLIANCE_CONFIG)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

import click

from appliance import config as config_mod
from appliance import cli_audit, layout, mime, policy
from appliance.buildjson import build_json
from appliance.cli_backup import backup
from appliance.cli_ssh import COMMANDS as SSH_COMMANDS
from appliance.errors import ApplianceError, PermissionDenied, UserError
from appliance.runtime import buildfs
from appliance.store import builds as builds_store
from appliance.store import mails as mails_store
from appliance.store import overview
from appliance.store import projects as projects_store
from appliance.store import users as users_store

# How often `build wait` and `logs -f` look again.
POLL_SECONDS = 0.5
FINAL_STATES = ("running", "stopped", "failed", "done", "dropped")
# C0 and C1 control characters but tab and newline.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Context:
    def __init__(self, config_path: str | None, acting_as: str | None = None):
        self.config_path = config_path
        self.acting_as = acting_as
        self._services = None

    def actor(self, conn) -> dict | None:
        """The user named by --as, whose rights the command has; None: the operator."""
        if not self.acting_as:
            return None
        return users_store.user_by_name(conn, self.acting_as)

    def require(self, conn, project: dict, action: str, stage: str | None = None) -> None:
        """Refuse (as the web does) what the --as user's role may not do."""
        policy.require_actor(conn, self.actor(conn), project, action, stage)

    @property
    def config(self) -> config_mod.Config:
        return self.services.config if self._services else config_mod.load(self.config_path)

    @property
    def services(self):
        if self._services is None:
            from appliance.daemon import open_services
            self._services = open_services(config_mod.load(self.config_path))
        return self._services


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option("--config", "config_path", envvar="APPLIANCE_CONFIG", type=click.Path(),
              help="the config file (default /etc/appliance/appliance.toml)")
@click.option("-v", "--verbose", is_flag=True, help="log at DEBUG level")
@click.option("--as", "acting_as", metavar="USER", default=None,
              help="act as this user, with their rights (appliance.policy); "
                   "without it the command acts as the server's operator")
@click.pass_context
def cli(ctx, config_path, verbose, acting_as):
    """The Odoo appliance: push a branch, get a tested Odoo build."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The scheduler logs every run of every job at INFO: only its problems are news.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    ctx.obj = Context(config_path, acting_as)


@cli.command()
@click.pass_context
def serve(ctx):
    """Run the appliance: web UI, git over HTTP, build workers, scheduler."""
    from appliance.daemon import serve as run
    run(config_mod.load(ctx.obj.config_path))


@cli.command()
@pass_ctx
def migrate(obj):
    """Apply the state database's migrations (safe to re-run)."""
    from appliance.store.db import Database, migrate as run
    db = Database(obj.config.database, max_size=1).open()
    try:
        applied = run(db)
    finally:
        db.close()
    click.echo(f"applied {', '.join(applied)}" if applied else "state database up to date")


@cli.group()
def user():
    """People who sign in."""


@user.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="may see and manage every project")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@pass_ctx
def user_create(obj, name, admin, password_stdin):
    """Create a user (asks for the password)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with obj.services.db.transaction() as conn:
        users_store.create_user(conn, name, password, is_admin=admin,
                                min_length=obj.config.accounts.password_min_length)
    click.echo(f"user {name} created{' (admin)' if admin else ''}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@pass_ctx
def user_password(obj, name, password_stdin):
    """Set a user's password (asks for it); the user's sessions in browsers end."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    with obj.services.db.transaction() as conn:
        users_store.set_password(conn, name, password,
                                 min_length=obj.config.accounts.password_min_length)
    click.echo(f"password of {name} changed; their sessions have ended")


@cli.group()
def token():
    """Tokens for git over HTTPS."""


@token.command("create")
@click.argument("user_name", metavar="USER")
@click.option("--label", default="", help="what the token is for")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(users_store.ALL_SCOPES),
              help="what it may do, repeatable (default: all of them)")
@click.option("--expires", default=None,
              help="never, a date (YYYY-MM-DD) or days (default: [accounts] token_default_days)")
def token_create(user_name, label, scopes, expires):
    """Create a token for USER; it is shown once (users make their own on their page)."""
    obj = click.get_current_context().find_object(Context)
    if expires is None:
        days = obj.config.accounts.token_default_days
        expires = str(days) if days else "never"
    expires_at = users_store.token_expiry(expires)
    scopes = scopes or users_store.ALL_SCOPES
    with obj.services.db.transaction() as conn:
        click.echo(users_store.create_token(conn, user_name, label, scopes, expires_at))


# `appliance key add|list|remove`, and ssh-install, ssh-keys, ssh-command (cli_ssh.py).
for _command in SSH_COMMANDS:
    cli.add_command(_command)


@cli.group()
def project():
    """Projects: one git repository, its branches and builds."""


@project.command("create")
@click.argument("name")
@click.option("--odoo-version", default=None, help="default: [odoo] default_version")
@click.option("--modules", default="", help="modules to install (default: all the branch's)")
@click.option("--member", "members", multiple=True, help="a user to add as developer")
@click.option("--demo", is_flag=True, help="mark as running on the offline stand-in")
@pass_ctx
def project_create(obj, name, odoo_version, modules, members, demo):
    """Create a project with its git repository and PostgreSQL role."""
    from appliance.jobs import projects as project_jobs
    created = project_jobs.create(obj.services, name, odoo_version, modules=modules,
                                  members=members, demo=demo)
    cfg = obj.services.config
    click.echo(f"project {created['name']} created (Odoo {created['odoo_version']})\n"
               f"  git remote add appliance {cfg.server.public_url.rstrip('/')}"
               f"/git/{created['name']}.git")


def _appliance_admin_only(obj) -> None:
    """With --as, only an appliance admin's account may rename or archive a project."""
    with obj.services.db.transaction() as conn:
        actor = obj.actor(conn)
    if actor is not None and not actor["is_admin"]:
        raise PermissionDenied("only an appliance admin may rename or archive a project")


@project.command("rename")
@click.argument("name")
@click.argument("new_name")
@pass_ctx
def project_rename(obj, name, new_name):
    """Rename a project nothing was pushed to yet (its repository and role too)."""
    from appliance.jobs import project_admin
    _appliance_admin_only(obj)
    renamed = project_admin.rename(obj.services, name, new_name)
    click.echo(f"project {name} is now {renamed['name']}\n  git remote add appliance "
               f"{obj.services.config.server.public_url.rstrip('/')}/git/{renamed['name']}.git")


@project.command("archive")
@click.argument("name")
@pass_ctx
def project_archive(obj, name):
    """Stop a project's servers, refuse its pushes and changes, hide it from its members'
    lists; its data and backups are kept (unarchive brings it back)."""
    from appliance.jobs import project_admin
    _appliance_admin_only(obj)
    stopped = project_admin.archive(obj.services, name, None)
    click.echo(f"project {name} archived; {len(stopped)} server(s) being stopped")


@project.command("unarchive")
@click.argument("name")
@pass_ctx
def project_unarchive(obj, name):
    """Let an archived project change again (its servers stay stopped until a build)."""
    from appliance.jobs import project_admin
    _appliance_admin_only(obj)
    project_admin.unarchive(obj.services, name)
    click.echo(f"project {name} unarchived")


@project.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def project_list(obj, as_json):
    """List the projects."""
    with obj.services.db.transaction() as conn:
        rows = projects_store.list_projects(conn)
    data = [{"name": p["name"], "odoo_version": p["odoo_version"],
             "production_branch": p["production_branch"], "demo": p["demo"]} for p in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for item in data:
            click.echo(f"{item['name']}\tOdoo {item['odoo_version']}")


@cli.group()
def build():
    """Builds of branches."""


@build.command("list")
@click.argument("project_name", metavar="PROJECT")
@click.option("--branch", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def build_list(obj, project_name, branch, as_json):
    """List a project's builds, newest first (--json: the API's shape, README)."""
    with obj.services.db.transaction() as conn:
        proj = projects_store.get_project(conn, project_name)
        rows = builds_store.list_builds(conn, proj, branch)
        steps = overview.steps_of_builds(conn, [r["id"] for r in rows])
    data = [build_json(obj.services.config, r, steps.get(r["id"], [])) for r in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for item in data:
            click.echo(f"#{item['id']}\t{item['branch']}\t{item['commit'][:8]}\t{item['state']}"
                       f"\t{item['result'] or '-'}\t{item['url'] or ''}")


@build.command("wait")
@click.argument("build_id", type=int, metavar="BUILD")
@click.option("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
@pass_ctx
def build_wait(obj, build_id, timeout):
    """Wait for a build to end: exit 0 when green, 1 when yellow or red, 2 on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with obj.services.db.transaction() as conn:
            row = builds_store.get_build(conn, build_id)
        if row["state"] in FINAL_STATES:
            break
        if time.monotonic() > deadline:
            click.echo(f"build #{build_id} still {row['state']} after {timeout:.0f} s", err=True)
            sys.exit(2)
        time.sleep(POLL_SECONDS)
    click.echo(f"build #{build_id}: {row['state']}, {row['result'] or 'no result'}"
               f"{': ' + row['reason'] if row['reason'] else ''}")
    sys.exit(0 if row["result"] == "success" else 1)


@build.command("rebuild")
@click.argument("branch_name", metavar="BRANCH")
@click.option("--project", "project_name", default=None,
              help="needed when several projects have a branch of that name")
@pass_ctx
def build_rebuild(obj, branch_name, project_name):
    """Build a branch's current head again (refused while it is building)."""
    from appliance.jobs import stages
    with obj.services.db.transaction() as conn:
        proj = _project_of_branch(conn, branch_name, project_name)
        actor = obj.actor(conn)
    row = stages.rebuild(obj.services, proj, branch_name, actor)
    click.echo(f"build #{row['id']} queued: {layout.build_page(obj.services.config, row['id'])}")


def _project_of_branch(conn, branch_name: str, project_name: str | None) -> dict:
    if project_name:
        return projects_store.get_project(conn, project_name)
    rows = conn.execute("""SELECT p.* FROM projects p JOIN branches b ON b.project_id = p.id
                           WHERE b.name = %s""", (branch_name,)).fetchall()
    if len(rows) != 1:
        raise UserError(f"{len(rows)} projects have a branch {branch_name!r}: say --project")
    return rows[0]


@cli.group()
def branch():
    """Branches: stages and merges."""


@branch.command("stage")
@click.argument("project_name", metavar="PROJECT")
@click.argument("branch_name", metavar="BRANCH")
@click.argument("stage", type=click.Choice(projects_store.STAGES))
@pass_ctx
def branch_stage(obj, project_name, branch_name, stage):
    """Move BRANCH to STAGE (production only when the project has none)."""
    from appliance.jobs import stages
    with obj.services.db.transaction() as conn:
        proj = projects_store.get_project(conn, project_name)
        actor = obj.actor(conn)
    stages.move(obj.services, proj, branch_name, stage, actor)
    click.echo(f"{branch_name} is now in {stage}")


@branch.command("merge")
@click.argument("project_name", metavar="PROJECT")
@click.argument("source")
@click.argument("target")
@pass_ctx
def branch_merge(obj, project_name, source, target):
    """Merge SOURCE into TARGET and build TARGET (a conflict changes nothing)."""
    from appliance.jobs import stages
    with obj.services.db.transaction() as conn:
        proj = projects_store.get_project(conn, project_name)
        actor = obj.actor(conn)
    result = stages.merge(obj.services, proj, source, target, actor)
    click.echo(f"merged {source} into {target} ({result.kind}, {result.commit[:8]}); "
               f"build #{result.build['id']} queued")


@cli.command()
@click.argument("build_id", type=int, metavar="BUILD")
@click.option("--file", "name", type=click.Choice(layout.LOG_FILES), default="install")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (Ctrl-C stops)")
@pass_ctx
def logs(obj, build_id, name, follow):
    """Print a build's log (install, pip or odoo)."""
    with obj.services.db.transaction() as conn:
        row = builds_store.get_build(conn, build_id)
        obj.require(conn, projects_store.project_by_id(conn, row["project_id"]), "logs",
                    row["stage"])
    path = layout.log_path(obj.services.config, build_id, name)
    offset, found = 0, False
    while True:
        try:
            # Never through a link: the server's log folder is written by its container.
            with buildfs.open_path(path) as handle:
                found = True
                handle.seek(offset)
                chunk = handle.read()
        except (FileNotFoundError, buildfs.UnsafePath):
            chunk = b""
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
            offset += len(chunk)
        if not follow:
            if not found:
                click.echo(f"build #{build_id} has no {name}.log yet", err=True)
            return
        time.sleep(POLL_SECONDS)


@cli.group()
def mail():
    """Mail caught from development and staging builds."""


@mail.command("list")
@click.argument("build_id", type=int, metavar="BUILD")
@click.option("--search", default="", help="words to find in sender, recipients or subject")
@click.option("--page", type=int, default=1, help=f"{mails_store.PAGE_SIZE} mails a page")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def mail_list(obj, build_id, search, page, as_json):
    """List the mails a build sent, newest first."""
    with obj.services.db.transaction() as conn:
        row = builds_store.get_build(conn, build_id)
        obj.require(conn, projects_store.project_by_id(conn, row["project_id"]), "mails",
                    row["stage"])
        rows = mails_store.list_mails(conn, build_id=build_id, search=search, page=page)
    if as_json:
        click.echo(json.dumps([mails_store.to_json(r) for r in rows], indent=2))
        return
    for row in rows:
        click.echo(printable(f"#{row['id']}\t{row['received_at']:%Y-%m-%d %H:%M:%S}\t"
                             f"{row['from_header'] or row['mail_from']}\t{row['to_header']}"
                             f"\t{row['subject']}{'  [malformed]' if row['malformed'] else ''}"))


@mail.command("show")
@click.argument("mail_id", type=int, metavar="MAIL")
@click.option("--raw", is_flag=True, help="the message exactly as received (.eml)")
@pass_ctx
def mail_show(obj, mail_id, raw):
    """Show one caught mail: its envelope, headers and text, or the raw message."""
    with obj.services.db.transaction() as conn:
        row = mails_store.get_mail(conn, mail_id)
        build_row = builds_store.get_build(conn, row["build_id"])
        obj.require(conn, projects_store.project_by_id(conn, row["project_id"]), "mails",
                    build_row["stage"])
    if raw:
        sys.stdout.buffer.write(row["raw"])
        sys.stdout.buffer.flush()
        return
    lines = [f"Mail #{row['id']} of build #{row['build_id']} ({row['project']}/"
             f"{row['branch']}), {row['size']} bytes, received {row['received_at']}",
             f"Envelope: from <{row['mail_from']}> to "
             f"{', '.join(f'<{r}>' for r in row['rcpt_to'])}"]
    readable = mime.read(row["raw"], malformed=row["malformed"])
    if readable.malformed:
        lines += [f"({mime.RAW_LABEL})", "", mime.raw_text(row["raw"])]
    else:
        lines += [f"{name}: {value}" for name, value in readable.headers] + [""]
        body = readable.text if readable.text is not None else readable.html
        lines.append(body if body is not None else "(no text or HTML body)")
        lines += [f"[attachment {item.index}: {item.filename}, {item.content_type}, "
                  f"{item.size} bytes]" for item in readable.attachments]
    click.echo(printable("\n".join(lines)))


def printable(text: str) -> str:
    """What a build wrote, safe for a terminal: control characters (escape sequences
    that could rewrite the screen or the title) shown as '?', lines and tabs kept."""
    return CONTROL_CHARACTERS.sub("?", text.replace("\r\n", "\n"))


@cli.command()
@click.pass_context
def doctor(ctx):
    """Check what the appliance needs (PostgreSQL, Docker, the base image, disk, the
    unit) and say how to fix each problem. Exit code 1 when something fails."""
    from appliance import doctor as checks
    results = checks.run(ctx.obj.config_path)
    for check in results:
        click.echo("\n".join(check.lines()))
    if any(check.status == "fail" for check in results):
        sys.exit(1)


cli.add_command(backup)


def main() -> None:
    try:
        with cli_audit.recorded(cli, sys.argv[1:]):  # the audit trail's row, once it ends
            cli(standalone_mode=True)
    except ApplianceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1 if isinstance(exc, UserError) else 3)


if __name__ == "__main__":
    main()
