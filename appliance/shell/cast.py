"""Recordings of production's terminals: asciicast v2 files (asciinema's format), one
per session, in a folder of the daemon's that no container mounts.

A file is a JSON header line, then one JSON array per event: [seconds, "o", text] for
what the terminal printed (what was typed shows as its echo; a password typed without
echo is not recorded) and [seconds, "r", "COLSxROWS"] for a resize.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from appliance.config import Config
from appliance.store import shell as shell_store

log = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600
# A session printing more than this stops being recorded (the file says so at its end).
MAX_BYTES = 64 * 1024 * 1024
SUFFIX = ".cast"


def folder(cfg: Config) -> Path:
    return Path(cfg.shell.cast_dir) if cfg.shell.cast_dir else \
        cfg.paths.data_dir / "shell" / "casts"


def path(cfg: Config, session_id: int) -> Path:
    return folder(cfg) / f"{int(session_id)}{SUFFIX}"


def open_for_reading(cfg: Config, session_id: int):
    """The recording as a binary file (FileNotFoundError when there is none); never
    through a link."""
    fd = os.open(path(cfg, session_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


def header(rows: int, cols: int, title: str, started: float) -> dict:
    return {"version": 2, "width": cols, "height": rows, "timestamp": int(started),
            "title": title, "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"}}


class Recorder:
    """Appends a session's events to its file as they happen."""

    def __init__(self, handle, rows: int, cols: int, title: str):
        self.handle = handle
        self.started = time.monotonic()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.size = 0
        self.full = False
        self._write(header(rows, cols, title, time.time()))

    @classmethod
    def create(cls, cfg: Config, session_id: int, rows: int, cols: int,
               title: str) -> "Recorder":
        target = path(cfg, session_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.chmod(FOLDER_MODE)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, FILE_MODE)
        return cls(os.fdopen(fd, "w", encoding="utf-8"), rows, cols, title)

    def output(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if text:
            self._event("o", text)

    def resize(self, rows: int, cols: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def _event(self, kind: str, data: str) -> None:
        if self.full:
            return
        if self.size + len(data) > MAX_BYTES:
            self.full = True
            data, kind = f"\r\n[recording stopped: more than {MAX_BYTES >> 20} MiB]\r\n", "o"
            log.warning("a shell recording reached %d bytes: the rest is not recorded",
                        MAX_BYTES)
        self._write([round(time.monotonic() - self.started, 6), kind, data])

    def _write(self, item) -> None:
        line = json.dumps(item, ensure_ascii=False) + "\n"
        self.size += len(line)
        self.handle.write(line)
        self.handle.flush()

    def close(self) -> None:
        if self.handle.closed:
            return
        rest = self.decoder.decode(b"", final=True)
        if rest:
            self._event("o", rest)
        self.handle.close()


def prune(svc) -> int:
    """Delete recordings older than [shell] cast_keep_days (the history keeps its line,
    without the link); returns how many went."""
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=svc.config.shell.cast_keep_days)
    with svc.db.transaction() as conn:
        ids = shell_store.recordings_before(conn, cutoff)
    for session_id in ids:
        try:
            path(svc.config, session_id).unlink()
        except FileNotFoundError:
            pass
        with svc.db.transaction() as conn:
            shell_store.forget_recording(conn, session_id)
    if ids:
        log.info("deleted %d shell recordings older than %s days", len(ids),
                 svc.config.shell.cast_keep_days)
    return len(ids)
