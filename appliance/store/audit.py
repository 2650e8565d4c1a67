"""The audit trail: who did what, when, from which address, on which project, branch or
build, and how it ended (refusals included). The web, git pushes and the command line
write here through `record`; the pages read through `search`.

What a row keeps of the request's fields goes through `clean`: a field is kept only when
its name is on the list of known-safe ones (SAFE_FIELDS) AND contains none of the words
of secrets (DENIED_WORDS), its value shortened and any password in a URL taken out. So a
password, token, TOTP code, relay password or a file's content is never written, even
when a new form names its field in an unexpected way.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from appliance.errors import UserError

SOURCES = ("web", "git", "cli")
OUTCOMES = ("ok", "refused", "denied", "not_found", "error")
# Names of fields (form fields, URL parts, command options) whose values are safe to keep.
SAFE_FIELDS = frozenset({
    # what the URL names
    "name", "branch", "build_id", "mail_id", "backup_id", "domain",
    # the project's and branches' forms
    "stage", "target", "push_behaviour", "relay_host", "relay_port", "relay_security",
    "relay_user", "mail_keep_days", "mail_keep_count", "public_access", "address",
    # collaborators and the admin pages
    "user", "user_name", "role", "reset", "odoo_version", "modules", "new_name", "admin", "demo",
    "disabled", "members",
    # the editor (which file, the commit's message; never the file's content)
    "path", "message",
    # tokens and keys (their names and scopes, never their values)
    "label", "scopes", "expires", "expires_on", "title",
    # uploads, backups, the command line
    "size", "kind", "format", "backup", "source", "stage_name", "project_name",
    "branch_name", "source_branch", "location", "yes", "member", "backup_id",
})
# A field whose name holds one of these is never kept, whatever the list above says.
DENIED_WORDS = ("password", "passwd", "secret", "token", "totp", "otp", "code", "key",
                "csrf", "content", "file", "data", "credential", "cookie", "session",
                "identity", "private", "cert")
# A cell of the permission matrix: "<stage>:<action>:<role>" (a checkbox's name).
MATRIX_CELL = re.compile(r"^(production|staging|development):[a-z_]{1,40}:(tester|developer)$")
MAX_VALUE = 200
MAX_VALUES = 20
MAX_REASON = 500
# user:password@ in a URL (rest:https://u:p@host/, s3 keys in a location, ...).
URL_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
URL_QUERY = re.compile(r"(\w+://[^\s?#]*)[?#]\S*")
PAGE_SIZE = 50


def is_safe_field(name: str) -> bool:
    lowered = name.lower()
    if any(word in lowered for word in DENIED_WORDS):
        return False
    return lowered in SAFE_FIELDS or MATRIX_CELL.match(lowered) is not None


def scrub(text: str) -> str:
    """Text with what URLs in it may carry as credentials taken out: user:password@ and
    the query string (a presigned URL's signature is a credential)."""
    return URL_QUERY.sub(r"\1?…", URL_USERINFO.sub("", text))


def _value(value):
    if isinstance(value, (bool, int)) or value is None:
        return value
    text = scrub(str(value))
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def clean(fields) -> dict:
    """The safe part of a mapping of fields (a form, view args, a command's parameters).
    A multi-valued field (a MultiDict's lists, a tuple) keeps at most MAX_VALUES values;
    cells of the permission matrix are gathered under "cells"."""
    kept: dict = {}
    cells = []
    items = fields.lists() if hasattr(fields, "lists") else fields.items()
    for name, value in items:
        if not isinstance(name, str) or not is_safe_field(name):
            continue
        if MATRIX_CELL.match(name.lower()):
            cells.append(name.lower())
            continue
        if isinstance(value, (list, tuple)):
            values = [_value(v) for v in value[:MAX_VALUES]]
            kept[name] = values[0] if len(values) == 1 else values
        else:
            kept[name] = _value(value)
    if cells:
        kept["cells"] = sorted(cells)
    return kept


def record(conn, *, source: str, action: str, outcome: str, user: dict | None = None,
           user_name: str | None = None, address: str = "", project: dict | None = None,
           branch: str = "", build_id: int | None = None, status: int | None = None,
           reason: str = "", details: dict | None = None) -> None:
    """One row of the trail. `details` must already be clean (see `clean`)."""
    if source not in SOURCES or outcome not in OUTCOMES:
        raise ValueError(f"unknown source or outcome: {source!r}, {outcome!r}")
    conn.execute(
        """INSERT INTO audit (source, user_id, user_name, address, action, project_id,
                              project_name, branch, build_id, status, outcome, reason, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (source, user["id"] if user else None,
         user_name if user_name is not None else (user["name"] if user else ""),
         address or "", action, project["id"] if project else None,
         project["name"] if project else "", branch or "", build_id, status, outcome,
         scrub(reason or "")[:MAX_REASON], Jsonb(details or {})))


@dataclass(frozen=True)
class Filters:
    """What the trail's pages filter on; empty means any."""
    user: str = ""
    project: str = ""
    action: str = ""
    since: dt.date | None = None   # from this day (UTC), included
    until: dt.date | None = None   # to this day (UTC), included
    project_id: int | None = None  # a project's own page: its rows only

    @classmethod
    def from_args(cls, args, project_id: int | None = None) -> "Filters":
        """From a query string; a date that is not YYYY-MM-DD is refused (UserError)."""
        return cls(user=args.get("user", "").strip(), project=args.get("project", "").strip(),
                   action=args.get("action", "").strip(), since=_day(args.get("since", "")),
                   until=_day(args.get("until", "")), project_id=project_id)

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        for column, value in (("user_name", self.user), ("project_name", self.project),
                              ("action", self.action)):
            if value:
                clauses.append(f"{column} = %s")
                params.append(value)
        if self.project_id is not None:
            clauses.append("project_id = %s")
            params.append(self.project_id)
        if self.since:
            clauses.append("at >= %s")
            params.append(_midnight(self.since))
        if self.until:
            clauses.append("at < %s")
            params.append(_midnight(self.until + dt.timedelta(days=1)))
        return (" AND ".join(clauses) or "true"), params

    def query(self) -> dict:
        """The filters as query-string arguments (for the pages' links)."""
        found = {"user": self.user, "project": self.project, "action": self.action,
                 "since": self.since.isoformat() if self.since else "",
                 "until": self.until.isoformat() if self.until else ""}
        return {key: value for key, value in found.items() if value}


def _day(text: str) -> dt.date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    older: int | None   # `before` for the next page back in time, None at the oldest
    newer: int | None   # `after` for the page after, None at the newest


def search(conn, filters: Filters, before: int | None = None, after: int | None = None,
           size: int = PAGE_SIZE) -> Page:
    """A page of rows, newest first: the newest ones, those just older than id `before`,
    or those just newer than id `after` (keyset pagination: rows written meanwhile never
    shift a page)."""
    where, params = filters.where()
    if after is not None:
        rows = conn.execute(f"SELECT * FROM audit WHERE {where} AND id > %s ORDER BY id LIMIT %s",
                            [*params, after, size]).fetchall()[::-1]
    elif before is not None:
        rows = conn.execute(f"""SELECT * FROM audit WHERE {where} AND id < %s
                                ORDER BY id DESC LIMIT %s""", [*params, before, size]).fetchall()
    else:
        rows = conn.execute(f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT %s",
                            [*params, size]).fetchall()
    if not rows:
        return Page(rows=[], older=None, newer=None)

    def beyond(comparison: str, edge: int) -> bool:
        return conn.execute(f"SELECT 1 FROM audit WHERE {where} AND id {comparison} %s LIMIT 1",
                            [*params, edge]).fetchone() is not None

    return Page(rows=rows, older=rows[-1]["id"] if beyond("<", rows[-1]["id"]) else None,
                newer=rows[0]["id"] if beyond(">", rows[0]["id"]) else None)


def choices(conn, project_id: int | None = None) -> dict[str, list[str]]:
    """The users, projects and actions the trail holds (the filters' lists)."""
    where, params = ("WHERE project_id = %s", [project_id]) if project_id is not None else ("", [])
    found = {}
    for column in ("user_name", "project_name", "action"):
        found[column] = [row[column] for row in conn.execute(
            f"SELECT DISTINCT {column} FROM audit {where} ORDER BY 1", params)
            if row[column]]
    return found


def prune(conn, retention_days: int) -> int:
    """Remove the rows older than the retention; how many went."""
    return conn.execute("DELETE FROM audit WHERE at < now() - make_interval(days => %s)",
                        (retention_days,)).rowcount
