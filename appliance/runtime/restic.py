"""restic, the backup engine: deduplicated, encrypted snapshots in a repository.

A thin adapter over the `restic` command (Debian 12: 0.14) run as a subprocess with
`--json`: it returns dataclasses (restic_output.py reads what restic prints) and raises
BackupError with restic's own message. The repository's password is only ever in a file
(`--password-file`), never on a command line, in the environment or in a log. Every
process runs with TZ=UTC (snapshot times, and so the daily/weekly/monthly buckets of
`forget`, are UTC) and, where util-linux's setpriv exists, dies with the thread that
started it: a killed daemon leaves no restic finishing a snapshot of a half-read stream
(its lock then goes stale, and `unlock` removes it).

restic 0.14 cannot put stdin and files into one snapshot, and takes the repository's
lock exclusively for forget, prune and check: callers serialise those with backups.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time as time_mod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from appliance.errors import BackupError
from appliance.runtime import restic_output as output
from appliance.runtime.restic_output import ForgetPlan, Node, Snapshot, Summary  # noqa: F401

log = logging.getLogger(__name__)

# restic's own lock is held by a process outside the appliance (or left stale by one):
# look again this often, until the caller's patience runs out.
LOCK_RETRY_SECONDS = 5.0
LOCKED = "repository is already locked"
# An interrupted restic removes its lock and exits within a second or two.
STOP_SECONDS = 10.0
NO_REPOSITORY = ("unable to open config file", "Is there a repository at the following")
# Only these variables of ours reach restic (plus the repository's own, e.g. credentials
# of a remote): none of RESTIC_* set around the daemon can redirect or unlock it.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass(frozen=True)
class Repository:
    """Where a repository is (a folder, or `sftp:`, `s3:`, `rest:` ...), the file holding
    its password, and the environment its backend needs (credentials of a remote)."""

    location: str
    password_file: Path
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KeepPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 3


class Restic:
    """One repository, driven through the restic command."""

    def __init__(self, repo: Repository, cache_dir: Path | None = None,
                 lock_wait_seconds: float = 0.0, binary: str = "restic"):
        self.repo = repo
        self.cache_dir = cache_dir
        self.lock_wait_seconds = lock_wait_seconds
        self.binary = binary
        self._live: set[subprocess.Popen] = set()  # restic processes running now
        self._guard = threading.Lock()
        self._stopped = False

    def interrupt(self) -> None:
        """Stop every restic this object runs, as Ctrl-C does (no snapshot is saved, the
        lock is removed), and start no more: the daemon is stopping."""
        with self._guard:
            self._stopped = True
            running = list(self._live)
        for proc in running:
            _interrupt(proc)

    # -- the repository ------------------------------------------------------------
    def exists(self) -> bool:
        result = self._run(["cat", "config"], check=False)
        if result.returncode == 0:
            return True
        if any(text in result.stderr for text in NO_REPOSITORY):
            return False
        raise BackupError(f"restic cannot open {self.repo.location}: {output.message(result.stderr)}")

    def init(self, chunker_params_from: "Restic | None" = None) -> bool:
        """Make the repository unless it exists; True when made. A copy target made with
        `chunker_params_from` deduplicates what `copy` brings from that repository."""
        if self.exists():
            return False
        args = ["init"]
        if chunker_params_from is not None:
            args += ["--copy-chunker-params", *chunker_params_from._source_args()]
        self._run(args)
        log.info("made the restic repository %s", self.repo.location)
        return True

    def unlock(self) -> None:
        """Remove stale locks only (their process is gone, or they are 30 minutes old)."""
        self._run(["unlock"])

    def locks(self) -> list[str]:
        """The ids of the locks in the repository, stale or not."""
        out = self._run(["list", "locks", "--no-lock"]).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def check(self, read_data_subset: str | None = None) -> str:
        """`restic check` (with `--read-data-subset`, e.g. "1/7" or "5%", that share of
        the data is read and verified too); its report, or BackupError with it."""
        args = ["check"] + (["--read-data-subset", read_data_subset] if read_data_subset else [])
        return self._run(args, quiet=False).stdout

    def prune(self) -> None:
        """Free the space of data no snapshot uses any more."""
        self._run(["prune"])

    # -- making snapshots ---------------------------------------------------------
    def backup_stdin(self, chunks: Iterable[bytes], filename: str, tags: list[str],
                     time: datetime | None = None) -> Summary:
        """A snapshot of one file, `filename`, whose bytes are `chunks`. When iterating
        them raises, restic is stopped first: no snapshot of a partial stream is made."""
        args = ["backup", "--stdin", "--stdin-filename", filename, *_tags(tags), *_time(time)]
        source = iter(chunks)
        with self._popen(args, stdin=subprocess.PIPE) as (proc, out, err):
            try:
                for chunk in source:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # restic ended early: its status and message say why
            except BaseException:
                _stop(proc)
                raise
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                if hasattr(source, "close"):
                    source.close()  # a generator left early stops its producer now
            code = proc.wait()
        return output.summary(code, "".join(out), "".join(err))

    def backup_paths(self, paths: list[str], cwd: Path, tags: list[str],
                     time: datetime | None = None, parent: str | None = None) -> Summary:
        """A snapshot of `paths`, relative to `cwd` (they are its top-level entries).
        Symbolic links are stored as links, never followed. Files are unchanged when
        their size, mtime and inode are (not their ctime: hard links change it). An
        unreadable file gives a snapshot all the same, its message in `warnings`."""
        args = ["backup", "--ignore-ctime", *_tags(tags), *_time(time)]
        if parent:
            args += ["--parent", parent]
        result = self._run(args + ["--", *paths], cwd=cwd, check=False)
        return output.summary(result.returncode, result.stdout, result.stderr)

    # -- reading them -------------------------------------------------------------
    def snapshots(self, tags: list[str] | None = None) -> list[Snapshot]:
        """The snapshots carrying every one of `tags`, oldest first."""
        args = ["snapshots"] + (["--tag", ",".join(tags)] if tags else [])
        return [output.snapshot(item) for item in json.loads(self._run(args).stdout or "[]")]

    def ls(self, snapshot_id: str) -> list[Node]:
        """Every entry of a snapshot."""
        return output.nodes(self._run(["ls", snapshot_id]).stdout)

    @contextlib.contextmanager
    def dump(self, snapshot_id: str, path: str) -> Iterator:
        """A binary stream of one file of a snapshot, read as restic decrypts it. Leaving
        the block before the end stops restic; a failure of restic raises BackupError."""
        args = ["dump", snapshot_id, path]
        with self._popen(args) as (proc, _, err):
            try:
                yield proc.stdout
            except BaseException:
                _stop(proc)
                raise
            finished = proc.stdout.read(1) == b""
            if not finished:
                _stop(proc)
            code = proc.wait()
            if finished and code != 0:
                raise BackupError(f"restic dump {snapshot_id} {path} failed: "
                                  f"{output.message(''.join(err))}")

    def restore(self, snapshot_id: str, target: Path, include: Iterable[str] = ()) -> None:
        """Extract a snapshot (or the paths matching `include`, like "/filestore") into
        `target`, a folder made here (0700): restoring into an existing folder is refused,
        so nothing is ever written through a link someone left there."""
        target = Path(target)
        os.mkdir(target, 0o700)  # FileExistsError when it is there
        args = ["restore", snapshot_id, "--target", str(target)]
        for pattern in include:
            args += ["--include", pattern]
        self._run(args)

    # -- other repositories -------------------------------------------------------
    def copy_to(self, target: "Restic", snapshot_ids: Iterable[str] = ()) -> None:
        """Copy snapshots (all when none are named) into `target`'s repository; those
        already there are skipped."""
        target._run(["copy", *self._source_args(), *snapshot_ids])

    def _source_args(self) -> list[str]:
        return ["--from-repo", self.repo.location,
                "--from-password-file", str(self.repo.password_file)]

    # -- forgetting ---------------------------------------------------------------
    def forget(self, snapshot_ids: Iterable[str]) -> None:
        ids = list(snapshot_ids)
        if ids:
            self._run(["forget", *ids])

    def forget_policy(self, tags: list[str], keep: KeepPolicy,
                      dry_run: bool = False) -> ForgetPlan:
        """Apply a keep policy to the snapshots carrying every one of `tags`, as one group
        (restic's buckets: the last snapshot of each of the `daily` latest days...)."""
        args = ["forget", "--tag", ",".join(tags), "--group-by", "",
                "--keep-daily", str(keep.daily), "--keep-weekly", str(keep.weekly),
                "--keep-monthly", str(keep.monthly)] + (["--dry-run"] if dry_run else [])
        return output.forget_plan(self._run(args).stdout)

    # -- running restic -----------------------------------------------------------
    def _command(self, args: list[str], quiet: bool = True) -> list[str]:
        base = [self.binary, "--repo", self.repo.location,
                "--password-file", str(self.repo.password_file), "--json"]
        if quiet:
            base.append("--quiet")
        if self.cache_dir is not None:
            base += ["--cache-dir", str(self.cache_dir)]
        if shutil.which(self.binary) is None:
            raise BackupError(f"{self.binary} not found: install the restic package")
        setpriv = shutil.which("setpriv")
        return ([setpriv, "--pdeathsig", "KILL"] if setpriv else []) + base + args

    def _env(self) -> dict:
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        return {**env, **self.repo.env, "TZ": "UTC"}

    def _run(self, args: list[str], cwd: Path | None = None, check: bool = True,
             quiet: bool = True) -> subprocess.CompletedProcess:
        """Run restic to its end; while another process holds the repository's lock, try
        again every LOCK_RETRY_SECONDS for up to lock_wait_seconds, removing stale locks
        (of processes gone) first."""
        deadline = time_mod.monotonic() + self.lock_wait_seconds
        while True:
            with self._started(self._command(args, quiet), cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) as proc:
                stdout, stderr = proc.communicate()
            result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
            locked = result.returncode != 0 and LOCKED in result.stderr
            if not locked or self._stopped or time_mod.monotonic() >= deadline:
                break
            log.info("restic %s: the repository is locked, trying again", args[0])
            if args[0] != "unlock":  # a lock whose process is gone would never go by itself
                with contextlib.suppress(BackupError):
                    self.unlock()
            time_mod.sleep(LOCK_RETRY_SECONDS)
        if check and result.returncode != 0:
            raise BackupError(f"restic {args[0]} failed: {output.message(result.stderr)}")
        return result

    @contextlib.contextmanager
    def _popen(self, args: list[str], stdin=subprocess.DEVNULL):
        """restic with its stdout as a stream (or, with a stdin to feed, collected with
        its stderr by threads, so that neither pipe fills)."""
        with self._started(self._command(args), stdin=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) as proc:
            out: list[str] = []
            err: list[str] = []
            readers = [_drain(proc.stderr, err)]
            if stdin is subprocess.PIPE:
                readers.append(_drain(proc.stdout, out))
            try:
                yield proc, out, err
            finally:
                if proc.poll() is None:
                    _stop(proc)
                for reader in readers:
                    reader.join()
                proc.stdout.close()

    @contextlib.contextmanager
    def _started(self, command: list[str], **kwargs):
        """A restic process, known to `interrupt` while it runs."""
        with self._guard:
            if self._stopped:
                raise BackupError("interrupted: the appliance is stopping")
            proc = subprocess.Popen(command, env=self._env(), **kwargs)
            self._live.add(proc)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                _stop(proc)
            with self._guard:
                self._live.discard(proc)


def _interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C, once: a second one would make restic exit at once, leaving its lock."""
    if proc.poll() is None and not getattr(proc, "interrupted", False):
        proc.interrupted = True
        proc.send_signal(signal.SIGINT)


def _stop(proc: subprocess.Popen) -> None:
    """Interrupt restic as Ctrl-C does: it saves no snapshot and removes its lock. Killed
    when it does not end within STOP_SECONDS (its lock then stays, stale)."""
    if proc.poll() is not None:
        return
    _interrupt(proc)
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _drain(stream, into: list[str]) -> threading.Thread:
    def read():
        for line in stream:
            into.append(line.decode(errors="replace"))
    thread = threading.Thread(target=read, name="restic-output", daemon=True)
    thread.start()
    return thread


def _tags(tags: list[str]) -> list[str]:
    for tag in tags:
        if not tag or "," in tag:
            raise ValueError(f"a restic tag cannot be empty or hold a comma: {tag!r}")
    return ["--tag", ",".join(tags)] if tags else []


def _time(moment: datetime | None) -> list[str]:
    if moment is None:
        return []
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    return ["--time", utc.strftime("%Y-%m-%d %H:%M:%S")]
