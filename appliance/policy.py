"""Who may do what: the one policy every route, job entry point and command acting as a
user asks.

Principals, from nobody to everybody:

    anonymous        not signed in (routes send them to sign in), or a disabled account
    outsider         signed in, not a member of the project: the project does not exist
                     for them (404, never 403: names of other people's projects stay hidden)
    tester           a member with the role tester
    developer        a member with the role developer
    admin            a member with the role admin: everything on the project
    appliance admin  everything everywhere

A member's rights are a matrix of stage x action, per project. The defaults are
Odoo.sh's: developers work on development and see the history of the rest; testers also
use staging's tools (a copy of production data, for acceptance tests); production's data
and tools are for project admins. A project admin edits the tester and developer columns
(store.permissions keeps the cells that differ from the defaults); the admin column is
fixed, so a project can never lock its admins out. Settings, collaborators, domains and
this matrix itself are the project admins' alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import NotFound, PermissionDenied
from appliance.store import projects as store_projects

STAGES = ("production", "staging", "development")
ROLES = ("tester", "developer", "admin")
# Every principal, for tests and the matrix's documentation.
PRINCIPALS = ("anonymous", "outsider", "tester", "developer", "admin", "appliance_admin")
# What may be granted per stage, with the words the settings page uses.
ACTIONS = {
    "view": "See its branches, builds and history",
    "open": "Open its builds (the running Odoo)",
    "logs": "Read its logs",
    "mails": "Read caught mail and release it",
    "shell": "Open a shell (browser and SSH)",
    "editor": "Edit code in the browser, commit and push",
    "rebuild": "Rebuild, start a stopped build, refresh from production",
    "stage_moves": "Push to its branches, move branches into it and merge into it",
    "backup_download": "Download its backups",
    "backup_restore": "Restore a backup or import a dump into it",
}
# Actions on the project as a whole: project admins (and appliance admins) only.
PROJECT_ACTIONS = {
    "settings": "Change the project's settings, collaborators, domains and permissions",
}
# Stand-in for "on at least one stage": a route that cannot know the stage before the
# form is read (an upload, later imported into a branch the user picks) asks this, and
# the job entry point asks again with the real stage.
ANY_STAGE = "*"

_EVERYONE = frozenset(ROLES)
_TESTERS_UP = frozenset({"tester", "admin"})
_DEVELOPERS_UP = frozenset({"developer", "admin"})
_ADMINS = frozenset({"admin"})

DEFAULTS: dict[tuple[str, str], frozenset[str]] = {
    **{("development", action): _EVERYONE for action in ACTIONS},
    ("development", "backup_download"): _ADMINS,
    ("development", "backup_restore"): _ADMINS,
    **{("staging", action): _TESTERS_UP for action in ACTIONS},
    ("staging", "view"): _EVERYONE,
    ("staging", "stage_moves"): _DEVELOPERS_UP,
    ("staging", "backup_restore"): _ADMINS,
    **{("production", action): _ADMINS for action in ACTIONS},
    ("production", "view"): _EVERYONE,
}


@dataclass(frozen=True)
class Matrix:
    """Which roles may do each action on each stage of one project."""
    cells: dict[tuple[str, str], frozenset[str]]

    def grants(self, role: str, action: str, stage: str) -> bool:
        if role == "admin":
            return True
        if stage == ANY_STAGE:
            return any(self.grants(role, action, s) for s in STAGES)
        return role in self.cells.get((stage, action), frozenset())

    def differences(self) -> set[tuple[str, str, str, bool]]:
        """(stage, action, role, allowed) for every cell that is not the default."""
        changed = set()
        for (stage, action), roles in self.cells.items():
            for role in ROLES:
                if role == "admin":
                    continue
                if (role in roles) != (role in DEFAULTS[(stage, action)]):
                    changed.add((stage, action, role, role in roles))
        return changed


DEFAULT_MATRIX = Matrix(dict(DEFAULTS))


def matrix_with(overrides) -> Matrix:
    """The defaults with (stage, action, role, allowed) rows applied; unknown rows (an
    action since removed) are ignored, and the admin column cannot be changed."""
    cells = {key: set(roles) for key, roles in DEFAULTS.items()}
    for stage, action, role, allowed in overrides:
        if (stage, action) not in cells or role not in ROLES or role == "admin":
            continue
        (cells[(stage, action)].add if allowed else cells[(stage, action)].discard)(role)
    return Matrix({key: frozenset(roles) for key, roles in cells.items()})


def decide(principal: str, matrix: Matrix, action: str, stage: str | None) -> str:
    """The decision, as a pure function: "allow", "hide" (the project is not theirs to
    know: 404) or "deny" (403). `stage` None asks about the project as a whole: "view"
    is any member's, PROJECT_ACTIONS the admins'."""
    if action not in ACTIONS and action not in PROJECT_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if stage is not None and stage != ANY_STAGE and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    if principal == "appliance_admin":
        return "allow"
    if principal not in ROLES:
        return "hide"
    if action in PROJECT_ACTIONS:
        return "allow" if principal == "admin" else "deny"
    if stage is None:
        if action != "view":
            raise ValueError(f"{action!r} is asked of a stage")
        return "allow"
    return "allow" if matrix.grants(principal, action, stage) else "deny"


def principal(conn, user: dict | None, project: dict) -> str:
    # A disabled account is nobody, whatever still holds its name: a terminal it opened,
    # a task it queued, a command run --as it.
    if user is None or user.get("disabled_at") is not None:
        return "anonymous"
    if user.get("is_admin"):
        return "appliance_admin"
    return store_projects.member_role(conn, project, user) or "outsider"


def matrix(conn, project: dict) -> Matrix:
    rows = conn.execute(
        "SELECT stage, action, role, allowed FROM project_permissions WHERE project_id = %s",
        (project["id"],)).fetchall()
    return matrix_with((r["stage"], r["action"], r["role"], r["allowed"]) for r in rows)


def allows(conn, user: dict | None, project: dict, action: str, stage: str | None = None) -> bool:
    return decide(principal(conn, user, project), matrix(conn, project), action, stage) == "allow"


def require(conn, user: dict | None, project: dict, action: str, stage: str | None = None) -> None:
    """Nothing when the user may; NotFound for whoever may not know the project,
    PermissionDenied (with what was refused, in words) for a member who may not."""
    verdict = decide(principal(conn, user, project), matrix(conn, project), action, stage)
    if verdict == "allow":
        return
    if verdict == "hide":
        raise NotFound(f"no project {project['name']!r}")
    what = ACTIONS.get(action) or PROJECT_ACTIONS[action]
    where = f" on {stage}" if stage and stage != ANY_STAGE else ""
    raise PermissionDenied(f"your role in {project['name']} does not allow this{where}: "
                           f"{what[0].lower()}{what[1:]}")


def visible_stages(conn, user: dict | None, project: dict) -> tuple[str, ...]:
    """The stages whose branches the user may see (an agency's client: staging only)."""
    who, cells = principal(conn, user, project), matrix(conn, project)
    return tuple(s for s in STAGES if decide(who, cells, "view", s) == "allow")


def set_matrix(conn, project: dict, granted: set[tuple[str, str, str]]) -> Matrix:
    """Make the tester and developer columns exactly `granted` ((stage, action, role)
    triples); only the cells that differ from the defaults are kept."""
    for stage, action, role in granted:
        if (stage, action) not in DEFAULTS or role not in ROLES:
            raise ValueError(f"no such cell: {stage} {action} {role}")
    cells = {key: frozenset(r for (s, a, r) in granted if (s, a) == key) | _ADMINS
             for key in DEFAULTS}
    wanted = Matrix(cells)
    conn.execute("DELETE FROM project_permissions WHERE project_id = %s", (project["id"],))
    for stage, action, role, allowed in sorted(wanted.differences()):
        conn.execute("""INSERT INTO project_permissions (project_id, stage, action, role, allowed)
                        VALUES (%s, %s, %s, %s, %s)""",
                     (project["id"], stage, action, role, allowed))
    return wanted


def require_actor(conn, user: dict | None, project: dict, action: str,
                  stage: str | None = None) -> None:
    """For job entry points: `user` is who asked (through the web or the CLI's --as); None
    is the appliance itself (its schedule, or the server's operator at the command line),
    which may do everything."""
    if user is not None:
        require(conn, user, project, action, stage)
