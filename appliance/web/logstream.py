"""Follow a build's log file as Server-Sent Events, one event per complete line.

Each event is `id: <byte offset after the line>` and `data: {"line": ..., "cont": ...}`.
`cont` is true for a continuation line: one that does not start with Odoo's log prefix,
after a record has been seen. The browser appends such lines to the previous entry, so a
traceback stays whole. Lines before any record (pip output, a start-up banner) are
entries of their own. A client resumes from an offset (`?offset=` or the Last-Event-ID
header EventSource sends when it reconnects by itself).

Nothing here knows Flask: `follow()` is a plain generator of text chunks. The server's
log is in a folder its container writes, so every file is opened with runtime.buildfs:
a symbolic link or a special file in its place reads as a missing log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Iterator

from appliance.runtime import buildfs

log = logging.getLogger(__name__)

# Odoo's log format: "2024-05-01 10:00:00,123 42 INFO dbname logger: message".
RECORD = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ [A-Z]+ ")
# Odoo.sh stops following a log after 5 minutes; so do we. A stream holds one of the web
# server's threads, so an open tab forgotten overnight must not keep one forever.
FOLLOW_SECONDS = 300
# How often the file is checked for new lines: fast enough to feel live, cheap on disk.
POLL_SECONDS = 0.25
# A comment is sent after this long without lines: the only way to notice a client that
# went away is a failing write (so a closed tab frees its thread within about twice
# this), and proxies drop connections that stay silent.
KEEPALIVE_SECONDS = 2
# When resuming mid-file, how far back to look for a record (to tell a continuation line
# from a line before any record). Bounded so a huge file costs little.
LOOKBACK_BYTES = 1 << 20
# A "line" longer than this without a newline is sent as it is (never buffered forever).
MAX_LINE_BYTES = 1 << 20
# Reading at most this much per poll keeps one event batch (and memory) small.
READ_CHUNK = 256 * 1024
# How long the browser waits before reconnecting by itself after a dropped connection.
RETRY_MILLISECONDS = 2000
# Without JavaScript the page shows the end of the file, at most this much.
PAGE_TAIL_BYTES = 2 * 1024 * 1024


def event(offset: int, line: bytes, cont: bool) -> str:
    text = line.rstrip(b"\r").decode("utf-8", errors="replace")
    return f"id: {offset}\ndata: {json.dumps({'line': text, 'cont': cont})}\n\n"


def open_log(path: Path):
    """The log for reading; FileNotFoundError when it is missing or is not a plain file
    (a container may have put a link to a host file in its place)."""
    try:
        return buildfs.open_path(path)
    except buildfs.UnsafePath as exc:
        log.warning("not serving %s: %s", path, exc)
        raise FileNotFoundError(str(path)) from None


def _size(path: Path) -> int:
    """The size of the plain file at path (0 when missing or not a plain file)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def record_before(path: Path, offset: int) -> bool:
    """Whether a log record starts somewhere in the LOOKBACK_BYTES before `offset`."""
    if offset <= 0:
        return False
    start = max(0, offset - LOOKBACK_BYTES)
    try:
        with open_log(path) as fh:
            fh.seek(start)
            chunk = fh.read(offset - start)
    except FileNotFoundError:
        return False
    lines = chunk.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first piece may be the tail of a longer line
    return any(RECORD.match(line) for line in lines)


class LogReader:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = max(0, offset)
        self.seen_record = record_before(path, self.offset)
        self.pending = b""
        self.fh = None

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def _open(self) -> bool:
        if self.fh is not None:
            return True
        try:
            self.fh = open_log(self.path)
        except FileNotFoundError:
            return False
        return True

    def read_events(self) -> list[str]:
        """SSE events for the complete lines written since the last call (maybe none)."""
        if not self._open():
            return []
        size = _size(self.path)  # 0 when removed while followed: wait for it to come back
        if size < self.offset + len(self.pending):  # truncated or replaced: start over
            log.info("%s shrank to %d bytes: following it from the start", self.path, size)
            self.close()
            self.offset, self.pending, self.seen_record = 0, b"", False
            if not self._open():
                return []
        self.fh.seek(self.offset + len(self.pending))
        base = self.offset  # data[0] is at this byte of the file
        data = self.pending + self.fh.read(READ_CHUNK)
        events, start = [], 0
        while (newline := data.find(b"\n", start)) >= 0:
            events.append(self._line(data[start:newline], base + newline + 1))
            start = newline + 1
        rest = data[start:]
        if len(rest) >= MAX_LINE_BYTES:
            events.append(self._line(rest, base + len(data)))
            start, rest = len(data), b""
        self.offset, self.pending = base + start, rest
        return events

    def _line(self, line: bytes, end: int) -> str:
        is_record = RECORD.match(line) is not None
        cont = not is_record and self.seen_record
        self.seen_record = self.seen_record or is_record
        return event(end, line, cont)


def follow(path: Path, offset: int = 0, *, follow_seconds: float = FOLLOW_SECONDS,
           poll_seconds: float = POLL_SECONDS, keepalive_seconds: float = KEEPALIVE_SECONDS,
           clock=time.monotonic, sleep=time.sleep) -> Iterator[str]:
    """The SSE stream of a file from `offset`: lines as they arrive, until the deadline.

    Waits for the file if it does not exist yet. Ends with `event: timeout`. When the
    client goes away the server's next write raises and closes this generator; the
    finally clause then releases the file at once.
    """
    reader = LogReader(path, offset)
    deadline = clock() + follow_seconds
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        quiet_since = clock()
        while True:
            events = reader.read_events()
            now = clock()
            if events:
                yield "".join(events)
                quiet_since = now
            elif now - quiet_since >= keepalive_seconds:
                yield ": keepalive\n\n"
                quiet_since = now
            if now >= deadline:
                yield f"event: timeout\ndata: {json.dumps({'offset': reader.offset})}\n\n"
                return
            if not events:  # after a batch, read again at once: more may be waiting
                sleep(poll_seconds)
    finally:
        reader.close()
        log.debug("stopped following %s at byte %d", path, reader.offset)


def tail(path: Path, limit: int = PAGE_TAIL_BYTES) -> tuple[str, int, int, bool]:
    """The end of a file for the page without JavaScript.

    Returns (text, start offset, end offset, truncated); the text starts on a line
    boundary and ends after the last complete line, so a stream from the end offset
    continues exactly where the text stops.
    """
    try:
        with open_log(path) as fh:
            size = fh.seek(0, 2)
            start = max(0, size - limit)
            fh.seek(start)
            data = fh.read(size - start)
    except FileNotFoundError:
        return "", 0, 0, False
    if start > 0:
        cut = data.find(b"\n") + 1
        data, start = data[cut:], start + cut
    end_of_lines = data.rfind(b"\n") + 1
    data = data[:end_of_lines]
    return data.decode("utf-8", errors="replace"), start, start + len(data), start > 0
