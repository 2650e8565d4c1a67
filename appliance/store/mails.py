"""Caught mail: messages development and staging builds sent, their index and raw bytes."""

from __future__ import annotations

from appliance.errors import NotFound

# Columns of a list row: everything but the raw message.
LIST_COLUMNS = """m.id, m.project_id, m.build_id, m.mail_from, m.rcpt_to, m.from_header,
    m.to_header, m.subject, m.message_id, m.sent_at, m.size, m.malformed, m.received_at"""
INSERT_COLUMNS = ("project_id", "build_id", "mail_from", "rcpt_to", "from_header", "to_header",
                  "subject", "message_id", "sent_at", "size", "malformed", "raw")
PAGE_SIZE = 50


def to_json(row: dict) -> dict:
    """A mail's index as JSON values (what the CLI prints and the API answers)."""
    def iso(value):
        return value.isoformat() if value is not None else None
    return {"id": row["id"], "build": row["build_id"], "branch": row.get("branch"),
            "mail_from": row["mail_from"], "rcpt_to": list(row["rcpt_to"]),
            "from": row["from_header"], "to": row["to_header"], "subject": row["subject"],
            "message_id": row["message_id"], "sent_at": iso(row["sent_at"]),
            "received_at": iso(row["received_at"]), "size": row["size"],
            "malformed": row["malformed"]}


def add_mails(conn, mails: list[dict]) -> list[int]:
    """Store messages (dicts with INSERT_COLUMNS) in one statement; returns their ids in
    the same order."""
    if not mails:
        return []
    row = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"
    values = [mail[column] for mail in mails for column in INSERT_COLUMNS]
    rows = conn.execute(
        f"""WITH added AS (
                INSERT INTO mails ({", ".join(INSERT_COLUMNS)})
                VALUES {", ".join([row] * len(mails))} RETURNING id)
            SELECT id FROM added ORDER BY id""", values).fetchall()
    return [r["id"] for r in rows]


def _filters(build_id, branch_id, project_id, search: str,
             stages=None) -> tuple[str, list]:
    where, params = [], []
    if stages is not None:  # only the builds of these stages (what the reader may read)
        where.append("b.stage = ANY(%s)")
        params.append(list(stages))
    if build_id is not None:
        where.append("m.build_id = %s")
        params.append(build_id)
    if branch_id is not None:
        where.append("b.branch_id = %s")
        params.append(branch_id)
    if project_id is not None:
        where.append("m.project_id = %s")
        params.append(project_id)
    for word in search.split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(m.from_header ILIKE %s OR m.mail_from ILIKE %s OR m.to_header ILIKE %s"
                     " OR array_to_string(m.rcpt_to, ' ') ILIKE %s OR m.subject ILIKE %s)")
        params.extend([pattern] * 5)
    return (" AND ".join(where) or "true"), params


def list_mails(conn, *, build_id: int | None = None, branch_id: int | None = None,
               project_id: int | None = None, search: str = "", page: int = 1,
               page_size: int = PAGE_SIZE, stages=None) -> list[dict]:
    """Newest first, without the raw bytes. Every word of `search` must appear in the
    sender, a recipient or the subject (case-insensitive); `stages`, when given, keeps
    the mail of builds of those stages only."""
    where, params = _filters(build_id, branch_id, project_id, search, stages)
    return conn.execute(
        f"""SELECT {LIST_COLUMNS}, br.name AS branch
            FROM mails m JOIN builds b ON b.id = m.build_id
            JOIN branches br ON br.id = b.branch_id
            WHERE {where} ORDER BY m.id DESC LIMIT %s OFFSET %s""",
        params + [page_size, (max(page, 1) - 1) * page_size]).fetchall()


def count_mails(conn, *, build_id: int | None = None, branch_id: int | None = None,
                project_id: int | None = None, search: str = "") -> int:
    where, params = _filters(build_id, branch_id, project_id, search)
    return conn.execute(
        f"""SELECT count(*) AS n FROM mails m JOIN builds b ON b.id = m.build_id
            WHERE {where}""", params).fetchone()["n"]


def newest_id(conn, *, build_id: int | None = None, branch_id: int | None = None) -> int:
    """The id of the newest message (0 when none): a page asks for it to know of new ones."""
    where, params = _filters(build_id, branch_id, None, "")
    return conn.execute(
        f"""SELECT coalesce(max(m.id), 0) AS id FROM mails m JOIN builds b ON b.id = m.build_id
            WHERE {where}""", params).fetchone()["id"]


def get_mail(conn, mail_id: int) -> dict:
    """One message with its raw bytes (as `bytes`), its build's branch and project."""
    row = conn.execute(
        f"""SELECT {LIST_COLUMNS}, m.raw, br.name AS branch, br.id AS branch_id,
                   p.name AS project
            FROM mails m JOIN builds b ON b.id = m.build_id
            JOIN branches br ON br.id = b.branch_id JOIN projects p ON p.id = m.project_id
            WHERE m.id = %s""", (mail_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mail #{mail_id}")
    row["raw"] = bytes(row["raw"])
    return row


def delete_build_mails(conn, build_id: int) -> int:
    return conn.execute("DELETE FROM mails WHERE build_id = %s", (build_id,)).rowcount


def prune(conn, project: dict) -> int:
    """Delete the project's mail older than its mail_keep_days, and the oldest beyond its
    newest mail_keep_count. Returns how many were deleted."""
    old = conn.execute(
        """DELETE FROM mails WHERE project_id = %s
           AND received_at < now() - make_interval(days => %s)""",
        (project["id"], project["mail_keep_days"])).rowcount
    beyond = conn.execute(
        """DELETE FROM mails WHERE project_id = %s AND id <= (
               SELECT id FROM mails WHERE project_id = %s
               ORDER BY id DESC OFFSET %s LIMIT 1)""",
        (project["id"], project["id"], project["mail_keep_count"])).rowcount
    return old + beyond
