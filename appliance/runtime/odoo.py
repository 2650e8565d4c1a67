"""Odoo as the appliance sees it: addon manifests and server logs (command lines:
odoo_commands).

Pure functions, no Docker and no database: the build jobs run the commands built
here in a container and hand the log back to `classify`, which decides whether the
build is green, yellow or red. The log format and the exit codes are those of real
Odoo 18 (format `%(asctime)s %(pid)s %(levelname)s %(dbname)s %(name)s: %(message)s`,
continuation lines unprefixed).
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from appliance.errors import ManifestError
# The command lines are named here too: callers know one module for Odoo.
from appliance.runtime.odoo_commands import (install_command, server_command,  # noqa: F401
                                             update_command)

_logger = logging.getLogger(__name__)

MANIFEST_NAME = "__manifest__.py"
DEFAULT_SERIES = "18.0"


# --------------------------------------------------------------------------- manifests


@dataclass
class Manifest:
    """One addon found in a repository."""

    name: str
    path: str  # the addon's folder relative to the repository root, POSIX style
    version: str
    depends: list[str]
    installable: bool
    data: dict  # the raw manifest dict


def read_manifest(folder: Path) -> dict:
    """Read `folder/__manifest__.py` as Odoo does (a Python literal dict)."""
    label = f"{folder.name}/{MANIFEST_NAME}"
    try:
        source = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{label}: cannot be read ({exc})") from exc
    try:
        value = ast.literal_eval(source)
    except SyntaxError as exc:
        raise ManifestError(
            f"{label}: not a Python dict (syntax error line {exc.lineno}: {exc.msg})"
        ) from exc
    except (ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ManifestError(f"{label}: not a Python dict (not a plain literal: {exc})") from exc
    if not isinstance(value, dict):
        raise ManifestError(f"{label}: not a Python dict (it is a {type(value).__name__})")
    _check_manifest_types(label, value)
    return value


def _check_manifest_types(label: str, manifest: dict) -> None:
    depends = manifest.get("depends", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise ManifestError(f"{label}: 'depends' must be a list of module names")
    if not isinstance(manifest.get("version", "1.0"), str):
        raise ManifestError(f"{label}: 'version' must be a string")


def find_modules(root: Path) -> list[Manifest]:
    """Every installable addon at depth 1 or 2 under `root`, sorted by name.

    Depth 2 covers repositories that keep their addons in a subfolder (`addons/x`)
    and OCA-style trees. Folders whose name starts with '.' are ignored; a folder
    that is an addon is not searched further.
    """
    found: dict[str, Manifest] = {}
    for folder in _candidate_folders(root):
        manifest = read_manifest(folder)
        if not manifest.get("installable", True):
            _logger.debug("skipping %s: not installable", folder)
            continue
        module = _make_manifest(root, folder, manifest)
        if module.name in found:
            raise ManifestError(
                f"module {module.name} is in two folders: {found[module.name].path} and {module.path}"
            )
        found[module.name] = module
    return sorted(found.values(), key=lambda m: m.name)


def _candidate_folders(root: Path) -> Iterator[Path]:
    for child in _visible_subfolders(root):
        if (child / MANIFEST_NAME).is_file():
            yield child
            continue
        for grandchild in _visible_subfolders(child):
            if (grandchild / MANIFEST_NAME).is_file():
                yield grandchild


def _visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _make_manifest(root: Path, folder: Path, manifest: dict) -> Manifest:
    return Manifest(
        name=folder.name,
        path=folder.relative_to(root).as_posix(),
        version=manifest.get("version", "1.0"),
        depends=list(manifest.get("depends", [])),
        installable=bool(manifest.get("installable", True)),
        data=manifest,
    )


def addons_dirs(root: Path, modules: list[Manifest]) -> list[str]:
    """The distinct folders holding `modules`, relative to `root` ('.' for the root)."""
    parents = {Path(m.path).parent.as_posix() for m in modules}
    return sorted(parents)


def full_version(version: str, series: str = DEFAULT_SERIES) -> str:
    """The version Odoo records as `latest_version`: `1.0` becomes `18.0.1.0`."""
    if version == series or not version.startswith(series + "."):
        return f"{series}.{version}"
    return version


# --------------------------------------------------------------------------- logs

_PREFIX_RE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) (?P<pid>\d+) "
    r"(?P<level>[A-Z_]+) (?P<db>\S+) (?P<logger>\S+?): ?(?P<message>.*)$"
)
# Lines written straight to stderr by libraries, not by Odoo's logging: never part
# of the record before them.
_RAW_LINE_PREFIXES = ("Warn: Can't find .pfb", "Restoring ")


@dataclass
class LogRecord:
    line_no: int  # 1-based line of the record's first line
    time: str | None
    pid: str | None
    level: str  # DEBUG INFO WARNING ERROR CRITICAL ..., or RAW for unprefixed lines
    db: str | None  # None when Odoo printed '?'
    logger: str | None
    message: str  # first line without trailing space, then the continuation lines
    text: str  # the record as printed: prefixed line plus continuation lines

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def summary(self) -> str:
        """`logger: first message line`, the form shown to people."""
        head = self.message.split("\n", 1)[0].strip()
        return f"{self.logger}: {head}" if self.logger else head

    @property
    def continuation(self) -> str:
        return self.text.split("\n", 1)[1] if "\n" in self.text else ""


class _RecordBuilder:
    """Accumulates the lines of one record."""

    def __init__(self, line_no: int, line: str):
        self.line_no = line_no
        self.lines = [line]
        self.match = _PREFIX_RE.match(line)

    def build(self) -> LogRecord:
        text = "\n".join(self.lines)
        if self.match is None:
            return LogRecord(self.line_no, None, None, "RAW", None, None, text, text)
        m = self.match
        message = "\n".join([m["message"].rstrip(), *self.lines[1:]])
        db = None if m["db"] == "?" else m["db"]
        return LogRecord(self.line_no, m["time"], m["pid"], m["level"], db, m["logger"], message, text)


def iter_records(lines: Iterable[str]) -> Iterator[LogRecord]:
    """Group log lines into records, streaming: a record is yielded when the next
    one starts (or at the end), so a traceback is never split."""
    current: _RecordBuilder | None = None
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        starts_record = _PREFIX_RE.match(line) or line.startswith(_RAW_LINE_PREFIXES)
        if current is not None and not starts_record and current.match is not None:
            current.lines.append(line)
            continue
        if current is not None:
            yield current.build()
        current = _RecordBuilder(line_no, line)
    if current is not None:
        yield current.build()


def parse_log(text: str) -> list[LogRecord]:
    """All records of a log; raw lines before the first record have level RAW."""
    return list(iter_records(text.splitlines()))


# --------------------------------------------------------------------------- classify

_TEST_RE = re.compile(r"^(?P<kind>FAIL|ERROR): (?P<name>\S+)")
_RESULT_RE = re.compile(r"(?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) of (?P<run>\d+) tests")
_UNKNOWN_RE = re.compile(r"invalid module names, ignored: (?P<names>.*)$")
_ERROR_LEVELS = ("ERROR", "CRITICAL")


@dataclass
class FailedTest:
    module: str | None
    name: str  # "Class.test_x"
    kind: str  # "FAIL" | "ERROR"
    traceback: str


@dataclass
class Classification:
    result: str  # "success" | "warning" | "failure"
    reason: str  # one sentence for people, "" on success
    failed_tests: list[FailedTest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tests_run: int | None = None
    unknown_modules: list[str] = field(default_factory=list)


def classify(log_text: str, exit_code: int, warning_ignore: list[str]) -> Classification:
    """Decide the colour of a build from its Odoo log and exit code.

    Red: a non-zero exit code, any ERROR/CRITICAL record, a failed test, or a module
    that Odoo ignored as unknown (the appliance asked for it). Yellow: a WARNING
    whose first line matches none of the `warning_ignore` regular expressions.
    """
    records = parse_log(log_text)
    failed = [t for t in map(_failed_test, records) if t is not None]
    errors = [r.summary for r in records if r.level in _ERROR_LEVELS]
    warnings = [r.summary for r in records if _is_counted_warning(r, warning_ignore)]
    unknown = [name for r in records for name in _unknown_modules(r)]
    summary = _tests_summary(records)
    found = Classification(
        result="success", reason="", failed_tests=failed, errors=errors, warnings=warnings,
        tests_run=int(summary["run"]) if summary else None, unknown_modules=unknown,
    )
    if exit_code != 0 or errors or failed or unknown:
        found.result = "failure"
        found.reason = _failure_reason(records, exit_code, failed, summary, unknown)
    elif warnings:
        found.result = "warning"
        found.reason = f"{len(warnings)} warning" + ("s" if len(warnings) > 1 else "")
    return found


def _failed_test(record: LogRecord) -> FailedTest | None:
    if record.level != "ERROR" or not record.logger:
        return None
    match = _TEST_RE.match(record.message)
    if not match:
        return None
    return FailedTest(
        module=_addon_of(record.logger), name=match["name"], kind=match["kind"],
        traceback=record.continuation.rstrip(),
    )


def _addon_of(logger: str) -> str | None:
    parts = logger.split(".")
    if len(parts) > 2 and parts[0] == "odoo" and parts[1] == "addons":
        return parts[2]
    return None


def _is_counted_warning(record: LogRecord, ignore: list[str]) -> bool:
    if record.level != "WARNING":
        return False
    return not any(re.search(pattern, record.first_line) for pattern in ignore)


def _unknown_modules(record: LogRecord) -> list[str]:
    if record.level != "WARNING":
        return []
    match = _UNKNOWN_RE.search(record.message.split("\n", 1)[0].rstrip())
    if not match:
        return []
    return [name.strip() for name in match["names"].split(",") if name.strip()]


def _tests_summary(records: list[LogRecord]) -> dict | None:
    summary = None
    for record in records:
        if record.logger == "odoo.tests.result":
            match = _RESULT_RE.search(record.message)
            summary = match.groupdict() if match else summary
    return summary


def _failure_reason(records, exit_code, failed, summary, unknown) -> str:
    if failed or (summary and (int(summary["failed"]) or int(summary["errors"]))):
        return _tests_sentence(failed, summary)
    if unknown:
        return "unknown module(s): " + ", ".join(unknown)
    critical = _worst_record(records)
    if critical is not None:
        head = critical.message.split("\n", 1)[0].strip()
        exception = _exception_line(critical.continuation)
        return f"{head.rstrip('.')}: {exception}" if exception else head
    exception = _last_exception_line(records)
    if exception:
        return f"exit code {exit_code}: {exception}"
    return f"exit code {exit_code}"


def _tests_sentence(failed: list[FailedTest], summary: dict | None) -> str:
    if summary:
        return f"{summary['failed']} failed, {summary['errors']} error(s) of {summary['run']} tests"
    fails = sum(1 for t in failed if t.kind == "FAIL")
    return f"{fails} failed, {len(failed) - fails} error(s)"


def _worst_record(records: list[LogRecord]) -> LogRecord | None:
    """The CRITICAL record carrying a traceback, else the first CRITICAL or ERROR."""
    for level in _ERROR_LEVELS[::-1]:
        candidates = [r for r in records if r.level == level]
        with_trace = [r for r in candidates if "Traceback (most recent call last)" in r.text]
        if with_trace:
            return with_trace[-1]
        if candidates:
            return candidates[0]
    return None


def _exception_line(traceback_text: str) -> str:
    """`ExceptionName: message` from the end of a traceback, module path dropped."""
    lines = traceback_text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return ""
    for line in lines[starts[-1] + 1:]:
        if line and not line[0].isspace():
            name, sep, rest = line.partition(":")
            return f"{name.rsplit('.', 1)[-1]}{sep}{rest}".strip()
    return ""


def _last_exception_line(records: list[LogRecord]) -> str:
    for record in reversed(records):
        line = _exception_line(record.text)
        if line:
            return line
    # A crash before Odoo's logging started prints its traceback raw: one record a line.
    return _exception_line("\n".join(r.text.rstrip("\n") for r in records if r.level == "RAW"))
