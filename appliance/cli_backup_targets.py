"""`appliance backup target ...` (copies off the box) and `appliance backup verify`.

Registered under the `backup` group by cli_backup.py: `target` (a group) and `verify`.
Secrets (a target's repository password, its credentials, an ssh identity) are read from
files or typed without echo, stored 0600 by jobs/backup_copies.py and never printed back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from appliance.errors import UserError
from appliance.store import projects as projects_store


def _iso(row: dict) -> dict:
    return {key: value.isoformat() if hasattr(value, "isoformat") else value
            for key, value in row.items()}


def _read(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _env_lines(data: bytes) -> dict:
    env = {}
    for number, line in enumerate(data.decode().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise UserError(f"--env-file line {number}: expected NAME=VALUE")
        env[key.strip()] = value.strip().strip("'\"")
    return env


@click.group()
def target():
    """Copies of the backups off the box: other restic repositories (a folder on another
    disk, sftp:user@host:/path, s3:host/bucket/path, rest:https://host/path)."""


@target.command("add")
@click.argument("name")
@click.argument("location")
@click.option("--password-file", type=click.Path(), default=None,
              help="the target repository's password, in a file (- for stdin); asked "
                   "for without echo when not given. Keep a copy elsewhere: without it "
                   "the copy cannot be read")
@click.option("--env-file", type=click.Path(), default=None,
              help="NAME=VALUE lines of credentials for restic's backend, e.g. "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3: (asked for when "
                   "not given)")
@click.option("--ssh-identity", type=click.Path(), default=None,
              help="sftp: the private key to log in with (copied; default: the daemon "
                   "user's own ssh keys and ssh config)")
@click.option("--ssh-port", type=int, default=None, help="sftp: the server's ssh port")
@click.option("--known-hosts", type=click.Path(), default=None,
              help="sftp: a known_hosts file with the server's key (default: the key "
                   "seen at the first connection is trusted from then on)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def target_add(obj, name, location, password_file, env_file, ssh_identity, ssh_port,
               known_hosts, as_json):
    """Add a copy target NAME at LOCATION; its repository is made now (or an existing one
    opened with the password), and every backup is copied there from now on."""
    from appliance.jobs import backup_copies
    if password_file:
        password = _read(password_file, "--password-file").decode().strip("\n")
    else:
        password = click.prompt("the target repository's password", hide_input=True,
                                confirmation_prompt=True)
    env = _env_lines(_read(env_file, "--env-file")) if env_file else {}
    if location.startswith("s3:") and not env:
        env = {"AWS_ACCESS_KEY_ID": click.prompt("AWS_ACCESS_KEY_ID"),
               "AWS_SECRET_ACCESS_KEY": click.prompt("AWS_SECRET_ACCESS_KEY",
                                                     hide_input=True)}
    row = backup_copies.add(
        obj.services, name, location, password, env=env,
        ssh_identity=_read(ssh_identity, "--ssh-identity") if ssh_identity else None,
        ssh_port=ssh_port,
        known_hosts=_read(known_hosts, "--known-hosts") if known_hosts else None)
    backup_copies.copy_pending(obj.services, [name])
    (status,) = [s for s in backup_copies.status(obj.services) if s["name"] == row["name"]]
    _show([status], as_json)


@target.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def target_list(obj, as_json):
    """The copy targets and how their copies went."""
    from appliance.jobs import backup_copies
    _show(backup_copies.status(obj.services), as_json)


@target.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask")
@click.pass_obj
def target_remove(obj, name, yes):
    """Stop copying to NAME and forget its secrets; its repository is left as it is."""
    from appliance.jobs import backup_copies
    if not yes:
        click.confirm(f"stop copying backups to {name}?", abort=True)
    row = backup_copies.remove(obj.services, name)
    click.echo(f"removed copy target {name}; its repository {row['location']} is kept")


@target.command("retry")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def target_retry(obj, name, as_json):
    """Copy now to NAME (or to every target) what it lacks. Exit 1 if one still fails."""
    from appliance.jobs import backup_copies
    statuses = backup_copies.copy_pending(obj.services, [name] if name else None)
    shown = [s for s in statuses if not name or s["name"] == name]
    if name and not shown:
        raise UserError(f"no copy target named {name!r}")
    _show(shown, as_json)
    if any(s["state"] == "failing" for s in shown):
        sys.exit(1)


def _show(statuses: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([_iso(s) for s in statuses], indent=2))
        return
    if not statuses:
        click.echo("no copy targets: add one with `appliance backup target add`")
    for s in statuses:
        last = f"{s['last_ok_at']:%Y-%m-%d %H:%M}" if s["last_ok_at"] else "never"
        line = f"{s['name']}\t{s['location']}\t{s['state']}\tlast copy {last}"
        if s["behind"]:
            line += f"\t{s['behind']} backup(s) behind"
        click.echo(line + (f"\n  error: {s['last_error']}" if s["state"] == "failing" else ""))


@click.command("verify")
@click.argument("project_name", metavar="PROJECT", required=False)
@click.option("--backup", "backup_id", type=int, default=None,
              help="this backup (default: the latest of production)")
@click.option("--repository", is_flag=True,
              help="instead: `restic check` of the whole backup repository")
@click.option("--read-data-subset", default=None,
              help="with --repository: the share of the data read, e.g. 5%% or 100%%")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(obj, project_name, backup_id, repository, read_data_subset, as_json):
    """Restore PROJECT's latest production backup into a scratch database and folder,
    compare it with its manifest, drop it. Exit 1 when it fails."""
    from appliance.jobs import backup_verify
    if repository:
        row = backup_verify.check_repository(obj.services, read_data_subset)
        ok = row["ok"]
        if as_json:
            click.echo(json.dumps(_iso(row), indent=2))
        else:
            click.echo(f"repository check ({row['read_data_subset']} of the data): "
                       f"{'no errors' if ok else 'FAILED'}\n{row['output'].strip()}")
    else:
        if not project_name:
            raise UserError("name a project, or --repository")
        with obj.services.db.transaction() as conn:
            project = projects_store.get_project(conn, project_name)
        result = backup_verify.verify(obj.services, project, backup_id)
        ok = result["ok"]
        if as_json:
            click.echo(json.dumps(backup_verify.to_json(result), indent=2))
        else:
            click.echo(f"backup #{result['backup_id']} of {project_name}: "
                       f"{'ok' if ok else 'FAILED'} in {result['seconds']:.1f} s"
                       + (f"\n{result['error']}" if result["error"] else ""))
    if not ok:
        sys.exit(1)
