"""What appliance admins do to a whole project besides creating it: rename it while that
is safe, archive it and bring it back.

Rename: a project's name is in its git URL, its databases' names, its containers' labels
and network, its builds' proxy names, its data folder and its backups. So it is renamed
only while none of those exist yet: no branch (hence no build, database, container,
domain or caught mail), no backup and no upload. Then only three things carry the name:
the row, the bare repository's folder and the PostgreSQL role, and all three are renamed.

Archive: the project's running (and sleeping) servers are stopped by the task workers;
pushes are refused (jobs/push.py) and so is every change through the web
(web/archived.py); its members no longer see it in their lists (appliance admins do);
its repository, databases, data and backups are kept. Unarchiving lets it change again;
its servers stay stopped until a push, a rebuild or a start.
"""

from __future__ import annotations

import logging
import os

from appliance.errors import NotFound, UserError
from appliance.runtime import postgres_roles
from appliance.store import builds as builds_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)


def _locked(conn, name: str) -> dict:
    project = conn.execute("SELECT * FROM projects WHERE name = %s FOR UPDATE",
                           (name,)).fetchone()
    if project is None:
        raise NotFound(f"no project {name!r}")
    return project


def rename_blockers(conn, project: dict) -> list[str]:
    """What makes renaming the project unsafe, in words (empty: it may be renamed)."""
    counts = conn.execute(
        """SELECT (SELECT count(*) FROM branches WHERE project_id = %(id)s) AS branches,
                  (SELECT count(*) FROM backups WHERE project_id = %(id)s) AS backups,
                  (SELECT count(*) FROM uploads WHERE project_id = %(id)s) AS uploads""",
        {"id": project["id"]}).fetchone()
    singular = {"branches": "branch", "backups": "backup", "uploads": "upload"}
    return [f"{counts[what]} {singular[what] if counts[what] == 1 else what}"
            for what in singular if counts[what]]


def rename(svc, name: str, new_name: str) -> dict:
    """Rename a project nothing was pushed to yet; UserError (nothing changed) otherwise."""
    cfg = svc.config
    new_name = projects_store.validate_name((new_name or "").strip())
    with svc.db.transaction() as conn:
        project = _locked(conn, name)
        if new_name == project["name"]:
            raise UserError(f"the project is already named {new_name}")
        blockers = rename_blockers(conn, project)
        if blockers:
            raise UserError(
                f"{name} cannot be renamed: it has {', '.join(blockers)}. Its name is in its "
                "git URL and its databases', containers' and proxy names: only a project "
                "nothing was pushed to yet can be renamed")
        new_role = cfg.database.role_prefix + new_name.replace("-", "_")
        if conn.execute("SELECT 1 FROM projects WHERE name = %s OR db_role = %s",
                        (new_name, new_role)).fetchone():
            raise UserError(f"project {new_name!r} already exists")
        old_repo = cfg.paths.repos / f"{project['name']}.git"
        new_repo = cfg.paths.repos / f"{new_name}.git"
        if new_repo.exists() or new_repo.is_symlink():
            raise UserError(f"a repository for {new_name!r} already exists")
        moved = old_repo.is_dir()
        if moved:
            os.rename(old_repo, new_repo)
        try:
            _rename_role(svc, project, new_role)
        except Exception:
            if moved:
                os.rename(new_repo, old_repo)
            raise
        renamed = conn.execute("UPDATE projects SET name = %s, db_role = %s WHERE id = %s "
                               "RETURNING *", (new_name, new_role, project["id"])).fetchone()
    log.info("project %s renamed to %s", name, new_name)
    return renamed


def _rename_role(svc, project: dict, new_role: str) -> None:
    if postgres_roles.role_exists(svc.postgres, project["db_role"]):
        postgres_roles.rename_role(svc.postgres, project["db_role"], new_role,
                                   project["db_password"])
    else:  # never made (or removed by hand): the new name gets a role of its own
        svc.postgres.ensure_role(new_role, project["db_password"])


def busy_builds(conn, project: dict) -> list[int]:
    """Builds queued or under way, and builds with a server task pending."""
    rows = conn.execute(
        """SELECT id FROM builds WHERE project_id = %(id)s AND state = ANY(%(busy)s)
           UNION SELECT t.build_id FROM tasks t JOIN builds b ON b.id = t.build_id
           WHERE b.project_id = %(id)s AND t.state IN ('queued', 'running')
           ORDER BY 1""",
        {"id": project["id"], "busy": ["queued", *builds_store.ACTIVE_STATES]}).fetchall()
    return [row["id"] for row in rows]


def archive(svc, name: str, user: dict | None) -> list[int]:
    """Archive the project and ask the workers to stop its servers; returns the builds
    whose servers are stopped. Refused while a build or a server task is under way."""
    with svc.db.transaction() as conn:
        project = _locked(conn, name)
        if project["archived_at"] is not None:
            raise UserError(f"{name} is already archived")
        busy = busy_builds(conn, project)
        if busy:
            raise UserError(f"{name} has builds queued or under way "
                            f"({', '.join(f'#{b}' for b in busy)}): archive it when they end")
        conn.execute("UPDATE projects SET archived_at = now() WHERE id = %s", (project["id"],))
        # A sleeping build would wake at the next visit: it is stopped for good instead.
        servers = [row["id"] for row in conn.execute(
            """UPDATE builds SET asleep = false WHERE project_id = %s
               AND (state = 'running' OR asleep) RETURNING id""", (project["id"],))]
        for build_id in servers:
            builds_store.request_task(conn, "stop_server", build_id,
                                      user["id"] if user else None)
    log.info("project %s archived; stopping the servers of builds %s", name, servers)
    return servers


def unarchive(svc, name: str) -> dict:
    with svc.db.transaction() as conn:
        project = _locked(conn, name)
        if project["archived_at"] is None:
            raise UserError(f"{name} is not archived")
        project = conn.execute("UPDATE projects SET archived_at = NULL WHERE id = %s "
                               "RETURNING *", (project["id"],)).fetchone()
    log.info("project %s unarchived", name)
    return project
