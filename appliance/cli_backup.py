"""`appliance backup ...`: backups of production and staging branches (jobs/backup.py).

Registered on the main group by cli.py; the click context's object is cli.Context.
"""

from __future__ import annotations

import json

import click

from appliance import policy
from appliance.cli_backup_targets import target, verify
from appliance.errors import UserError
from appliance.store import backups as backups_store
from appliance.store import projects as projects_store


@click.group()
def backup():
    """Backups: list, make, restore, download, import and verify them; copies off the
    box (`target`)."""


@backup.command("list")
@click.argument("project_name", metavar="PROJECT")
@click.option("--branch", default=None, help="only this branch's backups")
@click.option("--forgotten", is_flag=True, help="also those retention removed")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def backup_list(obj, project_name, branch, forgotten, as_json):
    """List a project's backups, newest first."""
    with obj.services.db.transaction() as conn:
        project = projects_store.get_project(conn, project_name)
        branch_row = projects_store.get_branch(conn, project, branch) if branch else None
        obj.require(conn, project, "backup_download",
                    branch_row["stage"] if branch_row else policy.ANY_STAGE)
        rows = backups_store.list_backups(conn, project, branch_row, forgotten=forgotten)
    if as_json:
        click.echo(json.dumps([backups_store.to_json(row) for row in rows], indent=2))
        return
    for row in rows:
        size = f"{row['bytes_added'] / 2**20:.1f} MB added" if row["bytes_added"] else "-"
        click.echo(f"#{row['id']}\t{row['started_at']:%Y-%m-%d %H:%M}\t{row['branch'] or '-'}"
                   f"\t{row['kind']}\t{row['state']}\t{size}"
                   f"{'  ' + row['error'] if row['error'] else ''}")


@backup.command("create")
@click.argument("project_name", metavar="PROJECT")
@click.option("--branch", default=None, help="a production or staging branch "
                                            "(default: production)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def backup_create(obj, project_name, branch, as_json):
    """Back up a branch now (waits for a deploy or a backup of the project under way)."""
    from appliance.jobs import backup as backup_jobs
    with obj.services.db.transaction() as conn:
        project = projects_store.get_project(conn, project_name)
        target = projects_store.get_branch(conn, project, branch) if branch else \
            projects_store.production_branch(conn, project)
        obj.require(conn, project, "backup_download",
                    target["stage"] if target else policy.ANY_STAGE)
    row = backup_jobs.create(obj.services, project, branch, "manual")
    if as_json:
        click.echo(json.dumps(backups_store.to_json(row), indent=2))
        return
    click.echo(f"backup #{row['id']} of {project_name}/{row['branch']} done in "
               f"{row['seconds']:.1f} s: dump {row['dump_bytes']} bytes, files "
               f"{row['files_bytes']} bytes, {row['bytes_added']} bytes added")


def _project(obj, name: str) -> dict:
    with obj.services.db.transaction() as conn:
        return projects_store.get_project(conn, name)


def _queued(obj, build: dict, what: str, as_json: bool) -> None:
    """Say which build does the work (its page shows progress and logs)."""
    from appliance import layout
    from appliance.buildjson import build_json
    from appliance.store import builds as builds_store
    with obj.services.db.transaction() as conn:
        row = builds_store.get_build(conn, build["id"])
        steps = builds_store.steps(conn, build["id"])
    if as_json:
        click.echo(json.dumps(build_json(obj.services.config, row, steps), indent=2))
        return
    click.echo(f"{what} queued: build #{row['id']} "
               f"{layout.build_page(obj.services.config, row['id'])}")


@backup.command("restore")
@click.argument("project_name", metavar="PROJECT")
@click.argument("backup_id", type=int)
@click.option("--branch", required=True, help="production or a staging branch: its data "
                                              "is replaced")
@click.option("--yes", is_flag=True, help="do not ask")
@click.option("--json", "as_json", is_flag=True, help="print the queued build as JSON")
@click.pass_obj
def backup_restore(obj, project_name, backup_id, branch, yes, as_json):
    """Replace BRANCH's database and files with backup BACKUP_ID (production: a backup
    of it first, and rolled back if the restore fails). Queues a build and says which."""
    from appliance.jobs import restores
    project = _project(obj, project_name)
    with obj.services.db.transaction() as conn:
        stage = projects_store.get_branch(conn, project, branch)["stage"]
        obj.require(conn, project, "backup_restore", stage)
        actor = obj.actor(conn)
    if not yes:
        click.confirm(f"Replace the database and files of {project_name}/{branch} ({stage}) "
                      f"with backup #{backup_id}?", abort=True, err=True)
    build = restores.request_restore(obj.services, project, backup_id, branch, actor)
    _queued(obj, build, f"restore of backup #{backup_id} into {branch}", as_json)


@backup.command("download")
@click.argument("project_name", metavar="PROJECT")
@click.argument("backup_id", type=int)
@click.option("--format", "kind", type=click.Choice(["zip", "dump"]), default="zip",
              show_default=True, help="the database manager's zip or pg_dump's custom dump")
@click.option("-o", "--output", default=None,
              help="the file to write (default: named after the backup, here); - for stdout")
@click.option("--json", "as_json", is_flag=True, help="print what was written as JSON")
@click.pass_obj
def backup_download(obj, project_name, backup_id, kind, output, as_json):
    """Write a backup as a zip that any Odoo's database manager restores, or as the
    native dump. A download cut short leaves no file behind."""
    from appliance.cli_backup_files import write_download
    project = _project(obj, project_name)
    with obj.services.db.transaction() as conn:
        row = backups_store.get(conn, backup_id)
        if row["project_id"] != project["id"]:
            raise UserError(f"{project_name} has no backup #{backup_id}")
        stage = conn.execute("SELECT stage FROM branches WHERE id = %s",
                             (row["branch_id"],)).fetchone() if row["branch_id"] else None
        obj.require(conn, project, "backup_download", stage["stage"] if stage else "production")
    written = write_download(obj.services, row, kind, output)
    if output == "-":
        return
    if as_json:
        click.echo(json.dumps(written, indent=2))
    else:
        click.echo(f"backup #{backup_id} written to {written['path']} ({written['bytes']} "
                   f"bytes, sha256 {written['sha256']})")


@backup.command("import")
@click.argument("project_name", metavar="PROJECT")
@click.argument("source", metavar="PATH_OR_URL")
@click.option("--branch", required=True, help="production or a staging branch: its data "
                                              "is replaced")
@click.option("--json", "as_json", is_flag=True, help="print the queued build as JSON")
@click.pass_obj
def backup_import(obj, project_name, source, branch, as_json):
    """Import a database manager zip, an Odoo.sh backup, a .sql, .sql.gz or custom dump
    (a file here, or an http(s) URL downloaded first, within [backup] upload_max_bytes)
    into BRANCH. It is checked before anything is queued."""
    from appliance.cli_backup_files import import_source
    project = _project(obj, project_name)
    with obj.services.db.transaction() as conn:
        actor = obj.actor(conn)
    build, name = import_source(obj.services, project, source, branch, actor)
    _queued(obj, build, f"import of {name} into {branch}", as_json)


# Copy targets and verification: their own module.
backup.add_command(target)
backup.add_command(verify)
