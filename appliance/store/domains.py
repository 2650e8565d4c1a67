"""Custom domains of production and staging branches (the proxy serves them)."""

from __future__ import annotations

import ipaddress
import re

from appliance.errors import NotFound, UserError

# A host name: labels of letters, digits and inner hyphens, at least two of them.
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
STAGES = ("production", "staging")


def check_name(name: str, base_domain: str) -> str:
    """The domain as stored (lowercase, no final dot), or a UserError saying why not."""
    name = (name or "").strip().lower().rstrip(".")
    if not name or len(name) > 253:
        raise UserError("a domain name is 1 to 253 characters")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise UserError(f"{name} is an address, not a domain name")
    labels = name.split(".")
    if len(labels) < 2 or not all(LABEL.match(label) for label in labels):
        raise UserError(f"{name!r} is not a domain name (letters, digits and hyphens, "
                        "in dot-separated labels, such as shop.example.com)")
    if labels[-1].isdigit():
        raise UserError(f"{name!r} is not a domain name")
    base = base_domain.lower().rstrip(".")
    if base and (name == base or name.endswith("." + base)):
        raise UserError(f"{name} is under the appliance's own domain {base}: its builds have "
                        "names there already")
    return name


def add(conn, project: dict, branch: dict, name: str, base_domain: str,
        user: dict | None = None) -> dict:
    """Give a production or staging branch a domain; the branch's first is its primary."""
    if branch["stage"] not in STAGES:
        raise UserError(f"{branch['name']} is a {branch['stage']} branch: only production "
                        "and staging branches get custom domains")
    name = check_name(name, base_domain)
    taken = conn.execute("SELECT d.name, p.name AS project FROM domains d JOIN projects p "
                         "ON p.id = d.project_id WHERE d.name = %s", (name,)).fetchone()
    if taken:
        raise UserError(f"{name} is already a domain of "
                        f"{'this project' if taken['project'] == project['name'] else 'another project'}")
    first = conn.execute("SELECT 1 FROM domains WHERE branch_id = %s",
                         (branch["id"],)).fetchone() is None
    return conn.execute(
        """INSERT INTO domains (project_id, branch_id, name, is_primary, created_by)
           VALUES (%s, %s, %s, %s, %s) RETURNING *""",
        (project["id"], branch["id"], name, first, user and user["id"])).fetchone()


def get(conn, project: dict, name: str) -> dict:
    row = conn.execute("SELECT * FROM domains WHERE project_id = %s AND name = %s",
                       (project["id"], (name or "").strip().lower().rstrip("."))).fetchone()
    if row is None:
        raise NotFound(f"{project['name']} has no domain {name!r}")
    return row


def make_primary(conn, project: dict, name: str) -> dict:
    row = get(conn, project, name)
    conn.execute("UPDATE domains SET is_primary = false WHERE branch_id = %s AND is_primary",
                 (row["branch_id"],))
    return conn.execute("UPDATE domains SET is_primary = true WHERE id = %s RETURNING *",
                        (row["id"],)).fetchone()


def remove(conn, project: dict, name: str) -> None:
    """Remove a domain; when it was the primary, the branch's oldest other one is."""
    row = get(conn, project, name)
    conn.execute("DELETE FROM domains WHERE id = %s", (row["id"],))
    if row["is_primary"]:
        conn.execute("""UPDATE domains SET is_primary = true WHERE id = (
                            SELECT id FROM domains WHERE branch_id = %s ORDER BY id LIMIT 1)""",
                     (row["branch_id"],))


def of_project(conn, project: dict) -> list[dict]:
    return conn.execute(
        """SELECT d.*, br.name AS branch, br.stage FROM domains d
           JOIN branches br ON br.id = d.branch_id WHERE d.project_id = %s
           ORDER BY br.name, NOT d.is_primary, d.name""", (project["id"],)).fetchall()


def all_domains(conn) -> list[dict]:
    """Every domain with its branch's id (for the proxy's routes)."""
    return conn.execute("SELECT * FROM domains ORDER BY branch_id, NOT is_primary, name"
                        ).fetchall()
