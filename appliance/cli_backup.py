"""`appliance backup ...`: backups of production and staging branches (jobs/backup.py).

Registered on the main group by cli.py; the click context's object is cli.Context.
"""

from __future__ import annotations

import json

import click

from appliance.store import backups as backups_store
from appliance.store import projects as projects_store


@click.group()
def backup():
    """Backups: list them, make one now."""


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
    row = backup_jobs.create(obj.services, project, branch, "manual")
    if as_json:
        click.echo(json.dumps(backups_store.to_json(row), indent=2))
        return
    click.echo(f"backup #{row['id']} of {project_name}/{row['branch']} done in "
               f"{row['seconds']:.1f} s: dump {row['dump_bytes']} bytes, files "
               f"{row['files_bytes']} bytes, {row['bytes_added']} bytes added")
