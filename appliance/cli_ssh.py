"""`appliance key ...` (users' SSH keys) and the commands of the SSH entry: `ssh-install`
(the host's sshd told about the appliance), and `ssh-keys` and `ssh-command`, which sshd
runs itself (see appliance/ssh).

Registered on the main group by cli.py; the click context's object is cli.Context.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from appliance import config as config_mod
from appliance.errors import PermissionDenied, SystemFailure
from appliance.store import ssh_keys
from appliance.store import users as users_store

log = logging.getLogger(__name__)


@click.group()
def key():
    """Users' SSH keys, for git and build shells over SSH."""


def _owner(obj, conn, user_name: str) -> dict:
    """The user whose keys these are; with --as, only oneself (or anyone, for an
    appliance admin)."""
    user = users_store.user_by_name(conn, user_name)
    actor = obj.actor(conn)
    if actor is not None and not actor["is_admin"] and actor["id"] != user["id"]:
        raise PermissionDenied("you may manage only your own keys")
    return user


@key.command("add")
@click.argument("user_name", metavar="USER")
@click.argument("source", metavar="FILE", type=click.File("r"), default="-")
@click.option("--name", default="", help="what the key is (default: its comment)")
@click.pass_obj
def key_add(obj, user_name, source, name):
    """Register the public key in FILE (a .pub file; - or nothing: standard input) for
    USER."""
    text = source.read(ssh_keys.MAX_LINE * 2)
    with obj.services.db.transaction() as conn:
        row = ssh_keys.add(conn, _owner(obj, conn, user_name), text, name)
    click.echo(f"key {row['name']!r} of {user_name} added: {row['fingerprint']}")


@key.command("list")
@click.argument("user_name", metavar="USER")
@click.pass_obj
def key_list(obj, user_name):
    """List USER's keys: name, type, fingerprint, added, last used."""
    with obj.services.db.transaction() as conn:
        rows = ssh_keys.of_user(conn, _owner(obj, conn, user_name)["id"])
    for row in rows:
        used = f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "never used"
        click.echo(f"{row['name']}\t{row['key_type']}\t{row['fingerprint']}\t"
                   f"added {row['created_at']:%Y-%m-%d}\t{used}")


@key.command("remove")
@click.argument("user_name", metavar="USER")
@click.argument("which", metavar="NAME")
@click.pass_obj
def key_remove(obj, user_name, which):
    """Remove USER's key NAME (a name or a fingerprint); its sessions open stay open,
    new ones are refused."""
    with obj.services.db.transaction() as conn:
        user = _owner(obj, conn, user_name)
        row = ssh_keys.remove(conn, user["id"], ssh_keys.find(conn, user["id"], which)["id"])
    click.echo(f"key {row['name']!r} of {user_name} removed")


@click.command("ssh-install")
@click.option("--dropin", type=click.Path(path_type=Path), default=None,
              help="the drop-in to write (default /etc/ssh/sshd_config.d/odoo-appliance.conf)")
@click.option("--wrapper", type=click.Path(path_type=Path), default=None,
              help="sshd's AuthorizedKeysCommand to write "
                   "(default /usr/libexec/odoo-appliance/ssh-authorized-keys)")
@click.pass_obj
def ssh_install(obj, dropin, wrapper):
    """Tell the host's sshd about the appliance's SSH user ([ssh] user): a drop-in in
    /etc/ssh/sshd_config.d/ and the command it runs; checked with `sshd -t`, then sshd
    reloaded. Run as root; safe to re-run."""
    from appliance.ssh import sshd_config
    if os.geteuid() != 0:
        raise SystemFailure("ssh-install writes sshd's configuration: run it as root")
    for line in sshd_config.install(obj.config, dropin or sshd_config.DROPIN,
                                    wrapper or sshd_config.WRAPPER):
        click.echo(f"ssh: {line}")


@click.command("ssh-keys", hidden=True)
@click.argument("login")
@click.argument("key_type")
@click.argument("key_body")
@click.pass_obj
def ssh_keys_command(obj, login, key_type, key_body):
    """sshd's AuthorizedKeysCommand (%u %t %k): the offered key's line, or nothing."""
    from appliance.ssh import authorized
    from appliance.ssh.command import log_to_syslog
    from appliance.store.db import Database
    log_to_syslog()
    cfg = config_mod.load(obj.config_path)
    db = Database(cfg.database, max_size=1).open()
    try:
        with db.transaction() as conn:
            line = authorized.authorized_line(conn, cfg, login, key_type, key_body)
    finally:
        db.close()
    if line:
        click.echo(line)


@click.command("ssh-command", hidden=True)
@click.argument("key_id", type=int)
@click.pass_obj
def ssh_command(obj, key_id):
    """The forced command of a registered key: serves SSH_ORIGINAL_COMMAND."""
    from appliance.ssh import command
    command.log_to_syslog()
    cfg = config_mod.load(obj.config_path)
    try:
        code = command.run(cfg, key_id, os.environ, sys.stderr)
    except Exception:  # the client sees a word, the log the whole story
        log.exception("ssh session of key %s failed", key_id)
        sys.stderr.write("the appliance failed to serve this (the error is logged)\n")
        code = 1
    sys.exit(code)


COMMANDS = (key, ssh_install, ssh_keys_command, ssh_command)
