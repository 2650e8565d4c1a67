"""What restic prints, read: its JSON (backup summaries, snapshots, forget plans, listings)
and its messages."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from appliance.errors import BackupError

# Exit status of a backup that could not read some files: the snapshot exists, incomplete.
INCOMPLETE = 3
FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class Summary:
    """What restic says at the end of a backup."""

    snapshot_id: str
    data_added: int
    total_bytes: int
    total_files: int
    seconds: float
    unmodified_files: int = 0    # found unchanged against the parent snapshot, not read
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    hostname: str

    def tag(self, name: str) -> str | None:
        """The value of a `name=value` tag, or None."""
        for tag in self.tags:
            key, sep, value = tag.partition("=")
            if sep and key == name:
                return value
        return None


@dataclass(frozen=True)
class ForgetPlan:
    """What `forget` with a policy keeps (with restic's reasons) and removes."""

    keep: list[Snapshot]
    remove: list[Snapshot]
    reasons: dict[str, list[str]]  # snapshot id -> ["daily snapshot", "weekly snapshot"...]


@dataclass(frozen=True)
class Node:
    path: str
    type: str
    size: int


def summary(code: int, stdout: str, stderr: str) -> Summary:
    """The summary line of a backup; BackupError when it made no snapshot."""
    found, warnings = None, []
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if item.get("message_type") == "summary":
            found = item
        elif item.get("message_type") == "error":
            warnings.append(f"{item.get('item', '')}: {item.get('error')}")
    if code not in (0, INCOMPLETE) or found is None:
        raise BackupError(f"restic backup failed: {message(stderr)}")
    if code == INCOMPLETE:
        warnings.append(message(stderr))
    return Summary(snapshot_id=found["snapshot_id"], data_added=found["data_added"],
                   total_bytes=found["total_bytes_processed"],
                   total_files=found["total_files_processed"],
                   seconds=found["total_duration"],
                   unmodified_files=found.get("files_unmodified", 0),
                   warnings=tuple(warnings))


def snapshot(item: dict) -> Snapshot:
    return Snapshot(id=item["id"], short_id=item.get("short_id", item["id"][:8]),
                    time=parse_time(item["time"]), tags=tuple(item.get("tags") or ()),
                    paths=tuple(item.get("paths") or ()), hostname=item.get("hostname", ""))


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 times (nanoseconds, Z or an offset) as aware datetimes."""
    return datetime.fromisoformat(FRACTION.sub(r"\1", text).replace("Z", "+00:00"))


def forget_plan(stdout: str) -> ForgetPlan:
    """`forget --json` (with a policy): what it keeps, with its reasons, and removes."""
    plan = ForgetPlan([], [], {})
    for group in json.loads(stdout or "[]"):
        # A reason names its snapshot by content (time, tree), not by id.
        reasons = {(r["snapshot"]["time"], r["snapshot"]["tree"]): r["matches"]
                   for r in group.get("reasons") or []}
        for item in group.get("keep") or []:
            plan.keep.append(snapshot(item))
            plan.reasons[item["id"]] = list(reasons.get((item["time"], item["tree"]), []))
        plan.remove.extend(snapshot(item) for item in group.get("remove") or [])
    return plan


def nodes(stdout: str) -> list[Node]:
    """`ls --json`: every entry of a snapshot."""
    found = []
    for line in stdout.splitlines():
        item = json.loads(line)
        if item.get("struct_type") == "node":
            found.append(Node(item["path"], item["type"], item.get("size", 0)))
    return found


def message(stderr: str) -> str:
    """restic's own words: its Fatal line, else its last lines."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line.removeprefix("Fatal: ") for line in lines if line.startswith("Fatal:")]
    return "; ".join(fatal or lines[-4:]) or "no message"
