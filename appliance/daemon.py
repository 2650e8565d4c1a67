"""The one process: waitress (web UI and git), the scheduler and the build workers.

Started in order — state database (migrated), folders and hooks, reconcile, the shell's
WebSocket server and control sockets (an asyncio loop of their own), the proxy's routes,
the mail catcher (its own asyncio loop), workers, scheduler, web server — and stopped in
reverse on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from waitress import create_server

from appliance import systemd_notify
from appliance.config import Config
from appliance.jobs import audit as audit_jobs
from appliance.jobs import backup as backup_jobs
from appliance.jobs import backup_copies, backup_verify
from appliance.jobs import containers, gc, proxy, sleep
from appliance.jobs import mail as mail_jobs
from appliance.jobs import uploads as upload_jobs
from appliance.jobs.queue import BuildQueue
from appliance.jobs.reconcile import reconcile
from appliance.runtime import git
from appliance.services import Services
from appliance.shell.service import ShellService
from appliance.store import db as store_db
from appliance.web.app import create_app

log = logging.getLogger(__name__)

# The appliance's own folders: its user (and group, for tools like backups) only.
FOLDER_MODE = 0o750
# waitress buffers a request body before the app sees it. A push over [git]
# max_push_bytes is refused by the app with git's own `remote:` lines, so the body must
# still reach it; past twice the limit (plus room) waitress cuts it off with a bare 413,
# before it fills the disk.
BODY_MARGIN_BYTES = 16 << 20

# How often the cap on running servers is enforced besides after each build.
SERVER_CAP_SECONDS = 60
# The audit trail's daily prune (UTC), between the backups' hours and their verification.
AUDIT_PRUNE_HOUR = 4


def prepare(cfg: Config) -> None:
    """Folders, hooks and the session key. Safe to re-run."""
    for folder in (cfg.paths.data_dir, cfg.paths.repos, cfg.paths.builds, cfg.paths.odoo):
        folder.mkdir(parents=True, exist_ok=True)
        # Containers see only what is mounted into them; nobody else on the host needs
        # to list repositories or builds (bind mounts do not need the parents' x bit).
        folder.chmod(FOLDER_MODE)
    for repo in cfg.paths.repos.glob("*.git"):
        git.close_repo(repo)  # repositories made before they were created 0750
    git.install_hooks(cfg.paths.hooks)
    if not cfg.server.secret_key:
        cfg.server.secret_key = load_secret_key(cfg)


def load_secret_key(cfg: Config) -> str:
    path = cfg.paths.data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def open_services(cfg: Config) -> Services:
    db = store_db.Database(cfg.database, max_size=cfg.server.threads + cfg.workers.builds + 4)
    db.open()
    store_db.migrate(db)
    prepare(cfg)
    return Services(cfg, db)


def _supervised(name: str, func, *args):
    """A scheduled job that logs its failure and carries on at its next run."""
    def job():
        try:
            func(*args)
        except Exception:  # the scheduler must outlive any one failing run
            log.exception("scheduled job %s failed; it runs again later", name)
    return job


def start_scheduler(svc) -> BackgroundScheduler:
    """The periodic jobs, each supervised: a failing run is logged and tried again later."""
    cfg = svc.config
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(_supervised("server-cap", containers.enforce_server_cap, svc),
                      "interval", seconds=SERVER_CAP_SECONDS, id="server-cap")
    scheduler.add_job(_supervised("gc", gc.collect, svc), "interval",
                      minutes=cfg.builds.gc_interval_minutes, id="gc")
    scheduler.add_job(_supervised("mail-retention", mail_jobs.prune, svc), "interval",
                      minutes=cfg.mail.prune_interval_minutes, id="mail-retention")
    scheduler.add_job(_supervised("uploads", upload_jobs.prune_abandoned, svc), "interval",
                      hours=1, id="uploads")  # uploads left alone past their expiry go
    # Daily, at a quiet hour: the audit trail's rows past [audit] retention_days go.
    scheduler.add_job(_supervised("audit-retention", audit_jobs.prune, svc), "cron",
                      hour=AUDIT_PRUNE_HOUR, minute=40, coalesce=True, max_instances=1,
                      id="audit-retention")
    # Hourly: each production's daily backup comes at its own hour (jobs/backup.py).
    scheduler.add_job(_supervised("backups", backup_jobs.run_daily, svc), "cron", minute=0,
                      jitter=cfg.backup.jitter_seconds, coalesce=True, max_instances=1,
                      id="backups")
    _schedule_backup_checks(svc, scheduler)
    if proxy.enabled(svc):  # Caddy restarted without the routes: they are loaded again
        scheduler.add_job(_supervised("proxy", proxy.watch, svc), "interval",
                          seconds=cfg.proxy.check_seconds, coalesce=True, max_instances=1,
                          id="proxy")
        # Builds visited through the proxy are noted as used; idle ones fall asleep.
        scheduler.add_job(_supervised("sleep", sleep.put_to_sleep, svc), "interval",
                          seconds=cfg.proxy.check_seconds, coalesce=True, max_instances=1,
                          id="sleep")
    scheduler.start()
    return scheduler


def _schedule_backup_checks(svc, scheduler: BackgroundScheduler) -> None:
    """Copies off the box (after each backup, and every copy_retry_minutes for a target
    that failed or missed one), the nightly verification of each production's latest
    backup, the weekly check of the repository (then the targets' prune)."""
    cfg = svc.config.backup
    copies = scheduler.add_job(_supervised("backup-copies", backup_copies.copy_pending, svc),
                               "interval", minutes=cfg.copy_retry_minutes, coalesce=True,
                               max_instances=1, id="backup-copies")
    # A finished backup asks for its copies now; a copy under way picks it up after.
    svc.extra["copy_soon"] = lambda: copies.modify(next_run_time=datetime.now(timezone.utc))
    if cfg.verify:
        scheduler.add_job(_supervised("backup-verify", backup_verify.run_nightly, svc),
                          "cron", hour=cfg.verify_hour, minute=30,
                          jitter=cfg.jitter_seconds, coalesce=True, max_instances=1,
                          id="backup-verify")
    scheduler.add_job(_supervised("repository-check", _weekly_check, svc), "cron",
                      day_of_week=cfg.check_weekday, hour=cfg.check_hour, minute=15,
                      coalesce=True, max_instances=1, id="repository-check")


def _weekly_check(svc) -> None:
    backup_verify.check_repository(svc)
    backup_copies.prune_targets(svc)


def serve(cfg: Config, ready: threading.Event | None = None) -> None:
    svc = open_services(cfg)
    reconcile(svc)
    # The shell's WebSocket server and control sockets: its port is in the proxy's routes.
    shell = ShellService(svc).start()
    proxy.refresh(svc, force=True)  # whatever Caddy ran, it now runs what the store says
    backup_jobs.recover(svc)
    backup_verify.recover(svc)
    catcher = mail_jobs.start_catcher(svc)
    queue = BuildQueue(svc)
    queue.start()
    scheduler = start_scheduler(svc)
    host, _, port = cfg.server.listen.rpartition(":")
    server = create_server(create_app(cfg, svc.db), host=host or "127.0.0.1", port=int(port),
                           threads=cfg.server.threads, ident="appliance",
                           max_request_body_size=2 * cfg.git.max_push_bytes + BODY_MARGIN_BYTES)

    stopping = threading.Event()

    def stop(signum, frame):
        if stopping.is_set():  # a second signal while builds drain: do not wait for them
            _exit_now(f"signal {signum} again: exiting now")
        stopping.set()
        log.info("signal %s: stopping", signum)
        systemd_notify.notify("STOPPING=1\nSTATUS=stopping: running builds finish first")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    systemd_notify.feed_from_server(server)
    log.info("serving on http://%s (public address %s)", cfg.server.listen, cfg.server.public_url)
    if ready is not None:
        ready.set()
    # systemd (Type=notify) counts the appliance started only now: migrated, reconciled,
    # and bound.
    systemd_notify.notify(f"READY=1\nSTATUS=serving on http://{cfg.server.listen}")
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        scheduler.shutdown(wait=False)
        backup_jobs.stop(svc)
        _stop_queue(queue, cfg.workers.stop_grace_seconds)
        shell.stop()
        catcher.stop()
        svc.db.close()
        log.info("stopped")


def _stop_queue(queue: BuildQueue, grace: float) -> None:
    """Let running builds finish for up to `grace` seconds. Past it they are left to the
    next start's reconcile (which starts them over), so a stop never hangs for an hour:
    the process ends at once, its worker threads with it."""
    if not queue.drain(grace):
        _exit_now(f"builds still running after {grace:g} s")


def _exit_now(why: str) -> None:
    log.warning("%s: the next start picks running builds up again", why)
    logging.shutdown()
    os._exit(0)
