"""Renaming a project's PostgreSQL role (a project renamed before anything was built).

Beside runtime/postgres.py's Postgres, on its administrative connection: only a role that
is one of the appliance's project roles (a member of [database] projects_group, not a
superuser) is touched.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from appliance.errors import SystemFailure
from appliance.runtime.postgres import Postgres

log = logging.getLogger(__name__)


def role_exists(postgres: Postgres, role: str) -> bool:
    with postgres._admin() as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (role,)).fetchone() is not None


def rename_role(postgres: Postgres, old: str, new: str, password: str) -> None:
    """ALTER ROLE old RENAME TO new, then its password set again (a rename clears an MD5
    password, whose salt is the role's name). Refuses a role that is not a project role's,
    and a new name some role already has."""
    with postgres._admin() as conn:
        found = conn.execute(
            """SELECT r.rolsuper, pg_has_role(r.oid, g.oid, 'MEMBER') AS ours
               FROM pg_roles r, pg_roles g WHERE r.rolname = %s AND g.rolname = %s""",
            (old, postgres.cfg.projects_group)).fetchone()
        if found is None or found[0] or not found[1]:
            raise SystemFailure(f"{old!r} is not one of the appliance's project roles: "
                                "refusing to rename it")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (new,)).fetchone():
            raise SystemFailure(f"a PostgreSQL role {new!r} already exists")
        try:
            conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}")
                         .format(sql.Identifier(old), sql.Identifier(new)))
        except psycopg.Error as exc:
            raise SystemFailure(f"cannot rename role {old} to {new}: {exc}") from None
    postgres.ensure_role(new, password)
    log.info("renamed PostgreSQL role %s to %s", old, new)
