"""Mail of builds: caught for development and staging, relayed for production.

Every development and staging build gets its own SMTP login to the catcher
(`build-<id>` and a password derived from the appliance's secret key): its Odoo is told
to send there by its odoo.conf, and its database's outgoing mail servers are replaced
by the catcher (neutralize's dummy server included), so what Odoo sends stays in the
appliance. (Code that opens SMTP connections of its own is not stopped: containers
are not firewalled.) The login decides which build a message belongs to: a build cannot file mail
under another's name, and production has no login at all. Production's Odoo sends
through the project's relay when one is set, else as its own database configures.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import logging
import re
import threading

from appliance import mime, policy
from appliance.errors import ConfigError, NotFound, UserError
from appliance.runtime import smtp
from appliance.store import builds as builds_store
from appliance.store import mails as mails_store
from appliance.store import projects as projects_store

log = logging.getLogger(__name__)

# The outgoing server a caught build's database is given (and recognised by later).
CATCHER_SERVER_NAME = "Appliance mail catcher"
LOGIN = re.compile(r"^build-(\d{1,10})$")
CAUGHT_STAGES = ("development", "staging")
# An address typed to release a mail to: one plain mailbox, nothing a header could hide.
ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


# Credentials ------------------------------------------------------------------------

def credentials(svc, build_id: int) -> tuple[str, str]:
    """The build's SMTP login to the catcher: user and password."""
    if not svc.config.server.secret_key:
        raise ConfigError("no [server] secret_key loaded: build SMTP logins derive from it")
    key = svc.config.server.secret_key.encode()
    message = f"appliance-smtp:{svc.instance}:{build_id}".encode()
    return f"build-{build_id}", hmac.new(key, message, hashlib.sha256).hexdigest()[:40]


class Senders:
    """Who a login belongs to: {build_id, project_id} of a development or staging build
    whose password matches, else None. A build's stage never changes, so answers are
    kept."""

    def __init__(self, svc):
        self.svc = svc
        self._known: dict[int, dict | None] = {}
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> dict | None:
        found = LOGIN.match(user)
        if not found:
            return None
        build_id = int(found.group(1))
        if not hmac.compare_digest(credentials(self.svc, build_id)[1].encode(),
                                   password.encode()):
            return None
        return self._build(build_id)

    def _build(self, build_id: int) -> dict | None:
        with self._lock:
            if build_id in self._known:
                return self._known[build_id]
        try:
            with self.svc.db.transaction() as conn:
                row = builds_store.get_build(conn, build_id)
        except NotFound:
            row = None
        sender = ({"build_id": row["id"], "project_id": row["project_id"]}
                  if row and row["stage"] in CAUGHT_STAGES else None)
        with self._lock:
            self._known[build_id] = sender
        return sender


# The catcher ------------------------------------------------------------------------

def endpoint(svc) -> tuple[str, int]:
    """Where build containers send their mail: host and port of the catcher."""
    host = svc.config.mail.listen_host or svc.docker.gateway()
    return host, svc.config.mail.port


def start_catcher(svc) -> smtp.Catcher:
    host, port = endpoint(svc)
    catcher = smtp.Catcher(host, port, authenticate=Senders(svc),
                           save_batch=lambda batch: save(svc, batch),
                           max_message_bytes=svc.config.mail.max_message_bytes,
                           max_recipients=svc.config.mail.max_recipients)
    catcher.start()
    return catcher


def save(svc, batch: list[smtp.Caught]) -> list[int]:
    """Index and store caught messages in one transaction; returns their ids."""
    rows = []
    for caught in batch:
        rows.append({
            "project_id": caught.sender["project_id"], "build_id": caught.sender["build_id"],
            "mail_from": mime.index_text(caught.mail_from),
            "rcpt_to": [mime.index_text(r) for r in caught.rcpt_to],
            "size": len(caught.raw), "raw": caught.raw, **mime.summary(caught.raw)})
    with svc.db.transaction() as conn:
        return mails_store.add_mails(conn, rows)


# Odoo's side -----------------------------------------------------------------------

def odoo_options(svc, project: dict, build_id: int, stage: str) -> dict[str, str]:
    """The smtp_* options of the build's odoo.conf: the catcher for development and
    staging; the project's relay for production (none set: Odoo's own settings)."""
    if stage in CAUGHT_STAGES:
        host, port = endpoint(svc)
        user, password = credentials(svc, build_id)
        return {"smtp_server": host, "smtp_port": str(port), "smtp_user": user,
                "smtp_password": password, "smtp_ssl": "False"}
    if not project.get("relay_host"):
        return {}
    options = {"smtp_server": project["relay_host"], "smtp_port": str(project["relay_port"]),
               "smtp_ssl": str(project["relay_security"] == "starttls")}
    if project["relay_user"]:
        options.update(smtp_user=project["relay_user"],
                       smtp_password=project["relay_password"])
    return options


def catch_database_mail(svc, build_id: int, database: str) -> str:
    """Make the catcher the only active outgoing server of a development or staging
    build's database (after install, neutralize or update); returns a summary."""
    host, port = endpoint(svc)
    user, password = credentials(svc, build_id)
    svc.postgres.use_only_mail_server(database, {
        "name": CATCHER_SERVER_NAME, "smtp_host": host, "smtp_port": port,
        "smtp_user": user, "smtp_pass": password})
    return f"sent to the catcher as {user}; other outgoing servers inactive"


# People's side ---------------------------------------------------------------------

def relay_of(svc, project: dict) -> smtp.Relay:
    if not project.get("relay_host"):
        raise UserError(f"project {project['name']} has no outgoing relay: set one in the "
                        "project's settings first")
    return smtp.Relay(host=project["relay_host"], port=project["relay_port"],
                      security=project["relay_security"], user=project["relay_user"],
                      password=project["relay_password"],
                      ca_bundle=svc.config.runtime.ca_bundle)


def release(svc, mail_id: int, address: str, user: dict) -> None:
    """Send one caught mail, as it was caught, to one address through the project's
    relay, and note it in the branch's history."""
    address = (address or "").strip()
    if not ADDRESS.match(address):
        raise UserError(f"{address!r} is not an e-mail address (one address, like "
                        "name@example.com)")
    with svc.db.transaction() as conn:
        mail = mails_store.get_mail(conn, mail_id)
        project = projects_store.project_by_id(conn, mail["project_id"])
        stage = builds_store.get_build(conn, mail["build_id"])["stage"]
        policy.require_actor(conn, user, project, "mails", stage)
    relay = relay_of(svc, project)
    sender = mail["mail_from"] or _first_address(mail["from_header"]) or relay.user
    smtp.send(relay, sender, [address], mail["raw"])
    with svc.db.transaction() as conn:
        builds_store.add_event(
            conn, project_id=project["id"], branch_id=mail["branch_id"],
            build_id=mail["build_id"], user_id=user["id"], kind="mail_released",
            message=f"mail #{mail_id} ({mail['subject'] or 'no subject'}) released to "
                    f"{address} by {user['name']}",
            data={"mail_id": mail_id, "to": address, "relay": relay.host})
    log.info("%s released mail #%d of build #%d to %s through %s", user["name"], mail_id,
             mail["build_id"], address, relay.host)


def _first_address(header: str) -> str:
    return email.utils.parseaddr(header)[1]


# Retention -------------------------------------------------------------------------

def prune(svc) -> int:
    """Delete caught mail beyond each project's retention; returns how many."""
    deleted = 0
    with svc.db.transaction() as conn:
        projects = projects_store.list_projects(conn)
    for project in projects:
        try:
            with svc.db.transaction() as conn:
                count = mails_store.prune(conn, project)
        except Exception:  # one project's failure must not keep the others' mail
            log.exception("could not prune the caught mail of project %s", project["name"])
            continue
        if count:
            log.info("pruned %d caught mail(s) of project %s", count, project["name"])
        deleted += count
    return deleted


def drop_build_mail(svc, build_id: int) -> int:
    with svc.db.transaction() as conn:
        return mails_store.delete_build_mails(conn, build_id)
