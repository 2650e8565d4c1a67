"""SMTP: the catcher builds send their mail to, and the client that talks to relays.

The catcher is an aiosmtpd server on its own asyncio loop (a thread of the daemon). A
sender must log in (AUTH PLAIN or LOGIN) before MAIL FROM; whoever `authenticate` says
the credentials belong to is the message's owner, whatever its headers claim. Accepted
messages are handed to a writer thread that saves them in batches: a message is
answered 250 only once it is stored, and under load many messages share one commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from appliance.errors import SystemFailure

log = logging.getLogger(__name__)
# aiosmtpd logs every command of every session at INFO, and warns on every connection
# that AUTH is allowed without TLS: the catcher listens on a host-only bridge address
# and its passwords are per build, so keep only its errors.
logging.getLogger("mail.log").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

# Messages saved in one batch at most (one transaction, one commit).
BATCH_SIZE = 64
# Longest a sender waits for its message to be stored before it is told to try later.
STORE_TIMEOUT_SECONDS = 60
# How long a relay may take to answer each step.
RELAY_TIMEOUT_SECONDS = 30


@dataclass
class Caught:
    """One accepted message, before it is saved."""
    sender: Any          # what `authenticate` returned for the session's credentials
    mail_from: str
    rcpt_to: list[str]
    raw: bytes


class _Writer(threading.Thread):
    """Saves caught messages in batches and wakes each waiting SMTP session."""

    def __init__(self, save_batch: Callable[[list[Caught]], list[int]]):
        super().__init__(name="smtp-writer", daemon=True)
        self.save_batch = save_batch
        self.inbox: queue.Queue = queue.Queue()

    def submit(self, caught: Caught, loop, future) -> None:
        self.inbox.put((caught, loop, future))

    def stop(self) -> None:
        self.inbox.put(None)

    def run(self) -> None:
        while True:
            first = self.inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_SIZE:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.inbox.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._save(batch)

    def _save(self, batch) -> None:
        try:
            ids = self.save_batch([caught for caught, _, _ in batch])
            outcomes = [(True, mail_id) for mail_id in ids]
        except Exception as exc:
            if len(batch) > 1:  # one bad message must not fail the others: one by one
                for item in batch:
                    self._save([item])
                return
            log.exception("could not store a caught message of %d bytes", len(batch[0][0].raw))
            outcomes = [(False, exc)]
        for (_, loop, future), (ok, value) in zip(batch, outcomes):
            try:
                loop.call_soon_threadsafe(_settle, future, ok, value)
            except RuntimeError:  # the loop is closed: that session is gone already
                log.warning("a caught message was stored after its session ended")


def _settle(future, ok: bool, value) -> None:
    if future.done():  # the session went away meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Handler:
    def __init__(self, writer: _Writer, max_recipients: int):
        self.writer = writer
        self.max_recipients = max_recipients
        self.storing = 0  # messages waiting for their answer (read by stop())

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return f"452 4.5.3 Too many recipients: at most {self.max_recipients} per message"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        caught = Caught(sender=session.auth_data, mail_from=envelope.mail_from or "",
                        rcpt_to=list(envelope.rcpt_tos), raw=raw)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.writer.submit(caught, loop, future)
        self.storing += 1
        try:
            mail_id = await asyncio.wait_for(future, STORE_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            log.error("storing a caught message took over %s s", STORE_TIMEOUT_SECONDS)
            return "451 4.3.0 The message could not be stored in time; try again later"
        except Exception:  # already logged by the writer
            return "451 4.3.0 The message could not be stored; try again later"
        finally:
            self.storing -= 1
        return f"250 2.0.0 OK: caught as mail #{mail_id}"


class _Controller(Controller):
    """aiosmtpd's controller, keeping its sessions so that stop() can end them: closing
    the server alone leaves connected senders waiting for an answer until they time out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sessions: weakref.WeakSet = weakref.WeakSet()

    def factory(self):
        session = super().factory()
        self.sessions.add(session)
        return session

    def close_sessions(self) -> None:
        def close():
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.close()
        self.loop.call_soon_threadsafe(close)


class Catcher:
    """The SMTP server of caught mail. `authenticate(user, password)` returns who sends
    (any value but None) or None to refuse; `save_batch(list[Caught])` stores messages
    and returns their ids in order."""

    def __init__(self, host: str, port: int, *, authenticate: Callable[[str, str], Any],
                 save_batch: Callable[[list[Caught]], list[int]], max_message_bytes: int,
                 max_recipients: int, server_name: str = "appliance-mail-catcher"):
        self.host, self.port = host, port
        self.authenticate = authenticate
        self.writer = _Writer(save_batch)
        self.handler = _Handler(self.writer, max_recipients)
        self.controller = _Controller(
            self.handler, hostname=host, port=port,
            server_hostname=server_name, ident="Odoo appliance mail catcher",
            authenticator=self._authenticator, auth_required=True, auth_require_tls=False,
            data_size_limit=max_message_bytes, decode_data=False)

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        try:
            sender = self.authenticate(user, password)
        except Exception:  # a broken lookup refuses, it never lets a sender through
            log.exception("could not check the SMTP credentials of %r", user)
            sender = None
        if sender is None:
            log.warning("refused SMTP login %r from %s", user, session.peer)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=sender)

    def start(self) -> None:
        self.writer.start()
        try:
            self.controller.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            self.writer.stop()
            raise SystemFailure(f"the mail catcher cannot listen on {self.host}:{self.port}: "
                                f"{exc}") from None
        log.info("mail catcher listening on %s:%s", self.host, self.port)

    def stop(self) -> None:
        """Store what was accepted and answer its senders while the loop still runs, then
        stop listening. A message that arrives meanwhile gets no 250: its sender keeps it
        and sends it again, so nothing is lost or stored twice."""
        self.writer.stop()
        self.writer.join(timeout=STORE_TIMEOUT_SECONDS)
        deadline = time.monotonic() + 5
        while self.handler.storing and time.monotonic() < deadline:
            time.sleep(0.01)  # the stored ones' 250 are being written
        self.controller.close_sessions()
        self.controller.stop()


@dataclass
class Relay:
    """An outgoing SMTP server: security is "none" or "starttls"."""
    host: str
    port: int = 587
    security: str = "starttls"
    user: str = ""
    password: str = ""
    ca_bundle: str = ""

    def __repr__(self) -> str:  # never the password
        return f"Relay({self.host}:{self.port}, {self.security}, user={self.user!r})"


def send(relay: Relay, mail_from: str, rcpt_to: list[str], raw: bytes) -> None:
    """Hand one message to a relay; SystemFailure says why it did not take it."""
    where = f"{relay.host}:{relay.port}"
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=RELAY_TIMEOUT_SECONDS) as client:
            client.ehlo()
            if relay.security == "starttls":
                context = ssl.create_default_context()
                if relay.ca_bundle:  # a corporate CA besides the system's, not instead
                    context.load_verify_locations(cafile=relay.ca_bundle)
                client.starttls(context=context)
                client.ehlo()
            if relay.user:
                client.login(relay.user, relay.password)
            refused = client.sendmail(mail_from, rcpt_to, raw)
    except smtplib.SMTPAuthenticationError as exc:
        raise SystemFailure(f"the relay {where} refused the login of {relay.user!r}: "
                            f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        reasons = "; ".join(f"{rcpt}: {code} {_text(msg)}"
                            for rcpt, (code, msg) in exc.recipients.items())
        raise SystemFailure(f"the relay {where} refused the recipients: {reasons}") from None
    except smtplib.SMTPResponseException as exc:
        raise SystemFailure(f"the relay {where} refused the message: {exc.smtp_code} "
                            f"{_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError, ssl.SSLError, socket.timeout) as exc:
        raise SystemFailure(f"cannot send through the relay {where}: {exc}") from None
    if refused:
        raise SystemFailure(f"the relay {where} refused: {', '.join(refused)}")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
