"""A plain pg_dump streamed into a database by the appliance itself, not by psql.

An uploaded .sql file is someone else's text. psql would run its meta-commands: `\\!`
starts a shell command on this host, `\\o` and `\\copy` write files, `\\c` connects
elsewhere, all as the daemon's user. So the dump is read here, line by line, and sent
over a connection of the project's own role: SQL statements as they come (many per
round trip, simple query protocol), each `COPY ... FROM stdin;` block through the COPY
protocol. A line that is a psql meta-command outside COPY data is refused, except
pg_dump's own `\\restrict`/`\\unrestrict` (psql's guard against exactly such lines, which
this reader does not need). Everything runs in one transaction: a broken or truncated
dump fails on its first error and leaves nothing (psql's ON_ERROR_STOP=1 with
--single-transaction). Memory stays bounded: long lines are read in pieces, and
statements are sent once SEND_BYTES have gathered, at the end of a statement.
"""

from __future__ import annotations

import logging
import re
from typing import BinaryIO

import psycopg

from appliance.errors import UserError

log = logging.getLogger(__name__)

# Gathered statements are sent once they pass this size (at the end of a statement).
SEND_BYTES = 8 << 20
# COPY data is handed to PostgreSQL in writes of about this size.
COPY_BYTES = 1 << 20
# Lines longer than this (a bytea row) are read in pieces.
PIECE_BYTES = 1 << 20
_COPY = re.compile(rb"^COPY .+ FROM stdin;\s*$", re.IGNORECASE)
_PG_DUMP_GUARDS = (b"\\restrict ", b"\\unrestrict ")
# What can open or close a quoted span, or end a statement, in one line of SQL.
_TOKENS = re.compile(rb"--|/\*|\*/|'|\"|\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$|;")


class Quoting:
    """Where a line of SQL leaves us: inside a string, an identifier, a $tag$ body or a
    block comment, or at the end of a statement. Used only to choose where to send a
    batch: a wrong guess makes the load fail, never runs anything else."""

    def __init__(self):
        self.open: bytes | None = None  # b"'", b'"', b"/*" or the $tag$
        self.statement_end = False

    def feed(self, line: bytes) -> None:
        self.statement_end = False
        for match in _TOKENS.finditer(line):
            token = match.group()
            if self.open is None:
                if token == b"--":
                    return
                if token == b";":
                    self.statement_end = True
                    continue
                if token != b"*/":
                    self.open = token
                self.statement_end = False
            elif token == self.open or (self.open == b"/*" and token == b"*/"):
                self.open = None
            # '' inside a string closes and reopens it: the state comes out the same

    @property
    def clean(self) -> bool:
        return self.open is None and self.statement_end


def load_sql(conn: psycopg.Connection, stream: BinaryIO) -> int:
    """Run the plain dump read from `stream` on `conn` (autocommit off: one transaction,
    committed at the end); returns the bytes read. UserError for a psql command in it;
    psycopg.Error from PostgreSQL as it comes."""
    loader = _Loader(conn)
    with conn.transaction():
        try:
            while piece := stream.readline(PIECE_BYTES):
                loader.feed(piece)
            loader.finish()
        except BaseException as exc:
            loader.abort(exc)
            raise
    return loader.bytes


class _Loader:
    def __init__(self, conn):
        self.conn = conn
        self.cursor = conn.cursor()
        self.batch: list[bytes] = []
        self.batch_bytes = 0
        self.quoting = Quoting()
        self.copy = None          # the open COPY, while its data is read
        self.copy_cm = None
        self.copy_data: list[bytes] = []
        self.copy_bytes = 0
        self.line_start = True
        self.bytes = 0

    def feed(self, piece: bytes) -> None:
        self.bytes += len(piece)
        starts, self.line_start = self.line_start, piece.endswith(b"\n")
        if self.copy is not None:
            if starts and piece.rstrip(b"\r\n") == b"\\.":
                self._end_copy()
            else:
                self._copy_piece(piece)
            return
        if starts and self.quoting.open is None:
            if piece.startswith(_PG_DUMP_GUARDS):
                return
            if piece.startswith(b"\\"):
                command = piece.split()[0].decode(errors="replace")
                raise UserError(f"the dump holds the psql command {command}: only "
                                "pg_dump's own output is loaded")
            if _COPY.match(piece):
                self._send()
                self._begin_copy(piece.rstrip(b"\r\n").rstrip(b";"))
                return
        self.batch.append(piece)
        self.batch_bytes += len(piece)
        if self.line_start:
            self.quoting.feed(b"".join(self._current_line()))
            if self.batch_bytes >= SEND_BYTES and self.quoting.clean:
                self._send()

    def _current_line(self) -> list[bytes]:
        """The last whole line of the batch (the pieces since the previous newline)."""
        line = []
        for part in reversed(self.batch):
            if line and part.endswith(b"\n"):
                break
            line.append(part)
        return line[::-1]

    def _send(self) -> None:
        if self.batch:
            self.cursor.execute(b"".join(self.batch))
            self.batch, self.batch_bytes = [], 0

    def _begin_copy(self, statement: bytes) -> None:
        self.copy_cm = self.cursor.copy(statement)
        self.copy = self.copy_cm.__enter__()

    def _copy_piece(self, piece: bytes) -> None:
        self.copy_data.append(piece)
        self.copy_bytes += len(piece)
        if self.copy_bytes >= COPY_BYTES:
            self.copy.write(b"".join(self.copy_data))
            self.copy_data, self.copy_bytes = [], 0

    def _end_copy(self) -> None:
        if self.copy_data:
            self.copy.write(b"".join(self.copy_data))
        self.copy_data, self.copy_bytes = [], 0
        copy_cm, self.copy, self.copy_cm = self.copy_cm, None, None
        copy_cm.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        """Leave an open COPY (PostgreSQL is told it failed) so the rollback can run."""
        if self.copy_cm is not None:
            copy_cm, self.copy, self.copy_cm = self.copy_cm, None, None
            try:
                copy_cm.__exit__(type(exc), exc, exc.__traceback__)
            except psycopg.Error as error:
                log.debug("aborting a COPY: %s", error)

    def finish(self) -> None:
        if self.copy is not None:
            raise UserError("the dump is cut short: it ends inside the data of a table")
        self._send()
