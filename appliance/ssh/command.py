"""The forced command of every key (`appliance ssh-command <key id>`): serve what the
client asked for, as the key's user, or refuse it.

sshd runs it, as the appliance's SSH user, for every session a registered key opens,
whatever the client asked: the wish is in SSH_ORIGINAL_COMMAND (see request.py). The
key's last use is noted first; a key removed, or a user disabled, since sshd asked about
it gets nothing. What goes to stderr reaches the client, so this process logs to the
host's syslog (auth facility) instead, never to its stderr.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from appliance.config import Config
from appliance.errors import SystemFailure, UserError
from appliance.ssh import address, git
from appliance.ssh.request import GitRequest, parse, usage
from appliance.store import ssh_keys
from appliance.store.db import Database

log = logging.getLogger(__name__)

SYSLOG = "/dev/log"
# Connections: the key's lookup, git's hooks (pre- and post-receive) and a shell's end.
POOL_SIZE = 3


def run(cfg: Config, key_id: int, environ: Mapping[str, str], err: TextIO) -> int:
    """Serve one SSH session; its exit status (what the client's ssh exits with)."""
    db = Database(cfg.database, max_size=POOL_SIZE)
    try:
        db.open()
    except SystemFailure as exc:
        log.error("ssh session of key %s: %s", key_id, exc)
        return _say(err, "the appliance cannot serve this now (its state database is "
                         "unreachable); try again later")
    try:
        return _serve(cfg, db, key_id, environ, err)
    except UserError as exc:
        return _say(err, str(exc))
    except SystemFailure as exc:
        log.error("ssh session of key %s failed: %s", key_id, exc)
        return _say(err, f"the appliance failed: {exc}")
    finally:
        db.close()


def _serve(cfg: Config, db: Database, key_id: int, environ: Mapping[str, str],
           err: TextIO) -> int:
    with db.transaction() as conn:
        found = ssh_keys.key_user(conn, key_id)
    if found is None or found[1].get("disabled_at"):
        log.warning("ssh session of key %s refused: the key or its user is gone", key_id)
        return _say(err, "this key is no longer registered (or its account is disabled)")
    key, user = found
    wish = environ.get("SSH_ORIGINAL_COMMAND")
    try:
        request = parse(wish)
    except UserError as exc:
        log.info("ssh: %s (key %r) refused: %s", user["name"], key["name"], exc)
        greeting = f"Hi {user['name']} (key {key['name']!r}): {exc}.\n"
        return _say(err, greeting + usage(address.destination(cfg),
                                          address.remote(cfg, "<project>")))
    if isinstance(request, GitRequest):
        log.info("ssh: %s (key %r): %s of %s", user["name"], key["name"], request.service,
                 request.project)
        return git.serve(cfg, db, user, request, environ)
    from appliance.ssh import shell  # Docker's SDK: only for shells
    log.info("ssh: %s (key %r): shell in %s", user["name"], key["name"], request.target())
    return shell.serve(cfg, db, user, request, environ, err)


def _say(err: TextIO, message: str) -> int:
    err.write(message if message.endswith("\n") else message + "\n")
    err.flush()
    return 1


def log_to_syslog() -> None:
    """Send this process's logging to the host's syslog, and none to stderr (the client)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if Path(SYSLOG).exists():
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG, facility=logging.handlers.SysLogHandler.LOG_AUTH)
        handler.setFormatter(logging.Formatter(
            f"appliance-ssh[{os.getpid()}]: %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
