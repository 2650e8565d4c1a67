"""sshd's AuthorizedKeysCommand: the authorized_keys line of the key a client offers.

sshd runs `appliance ssh-keys <login user> <key type> <key>` (%u %t %k) for each key a
client offers the appliance's SSH user. The answer is one line, the key with options that
bind it to the appliance's dispatcher, or nothing (sshd then refuses the key):

    restrict,pty,command="<python> -I -m appliance.cli --config <file> ssh-command 12" \
        ssh-ed25519 AAAA...

`restrict` takes away every forwarding, the user rc and the terminal; `pty` gives the
terminal back for build shells. The key is found by its SHA256 fingerprint, computed here
from the key itself (so whatever FingerprintHash the host's sshd uses does not matter).
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from appliance.config import DEFAULT_PATH, Config
from appliance.errors import UserError
from appliance.store import ssh_keys

log = logging.getLogger(__name__)

OPTIONS = "restrict,pty"


def dispatcher(cfg: Config, key_id: int) -> list[str]:
    """The command line of the forced command for one key: this same appliance."""
    config = Path(cfg.source or DEFAULT_PATH).absolute()
    return [sys.executable, "-I", "-m", "appliance.cli", "--config", str(config),
            "ssh-command", str(key_id)]


def authorized_line(conn, cfg: Config, login: str, key_type: str, key_body: str) -> str:
    """The line for sshd, or "" when the key is not one to let in as `login`."""
    if login != cfg.ssh.user:
        log.warning("asked about a key for %r, which is not the SSH user %r", login,
                    cfg.ssh.user)
        return ""
    try:
        offered = ssh_keys.parse(f"{key_type} {key_body}")
    except UserError as exc:
        log.info("offered key not accepted: %s", exc)
        return ""
    key = ssh_keys.by_fingerprint(conn, offered.fingerprint)
    if key is None:
        log.info("unknown key %s offered", offered.fingerprint)
        return ""
    user = conn.execute("SELECT * FROM users WHERE id = %s", (key["user_id"],)).fetchone()
    if user is None or user.get("disabled_at"):
        log.info("key %s of a disabled user offered", offered.fingerprint)
        return ""
    # sshd reads \" inside the quotes as a quote, and any other backslash as itself.
    command = shlex.join(dispatcher(cfg, key["id"])).replace('"', '\\"')
    return f'{OPTIONS},command="{command}" {key["key_type"]} {key["key_body"]}'
