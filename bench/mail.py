"""Throughput of the mail catcher against a bare aiosmtpd sink.

The catcher as the daemon runs it (appliance.runtime.smtp.Catcher with the real
authenticator and the real store of appliance.jobs.mail, on a scratch state database)
against an aiosmtpd Controller whose handler answers "250 OK" and keeps nothing, no
login. Both listen on 127.0.0.1 in this process; 1,000 mails of 50 KB (an HTML part and a
base64 attachment) go to each from 4 sender processes, each over one SMTP connection that
it keeps for its 250 mails; only the catcher's senders log in first. The two alternate
which goes first; the catcher's rows are counted after each round. Prints medians over
--rounds of messages per second and the ratio catcher/bare. Target: at least 0.5.
`--smoke` sends 40 mails in one round: it checks the bench works, its figures mean
nothing.

    .venv/bin/python bench/mail.py [--rounds 3] [--mails 1000] [--config FILE] [--smoke]

The config (default: $APPLIANCE_CONFIG, else var/appliance.toml of the checkout as
`make test` writes it) says how to reach PostgreSQL; its role must be able to create
databases. The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import smtplib
import socket
import statistics
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from appliance import config as config_mod  # noqa: E402
from appliance.jobs import mail as mail_jobs  # noqa: E402
from appliance.runtime import smtp  # noqa: E402
from appliance.services import Services  # noqa: E402
from appliance.store import builds as builds_store  # noqa: E402
from appliance.store import projects as projects_store  # noqa: E402
from bench.scratch import scratch_state  # noqa: E402

MAILS = 1000
SENDERS = 4
SMOKE_MAILS = 40
MESSAGE_BYTES = 50 * 1024
HOST = "127.0.0.1"
MAIL_FROM = "notifications@bench.example.com"
RCPT_TO = ["customer@bench.example.com"]
WARMUP_MAILS = 8  # per sender: processes started, imports and the login cache warm


def message() -> bytes:
    """A mail as Odoo sends one: text and HTML alternatives and a PDF-like attachment,
    about MESSAGE_BYTES in all, CRLF line ends."""
    rng = random.Random(50)
    html = ("<html><body><p>Dear customer,</p><p>Please find attached your invoice "
            "INV/2024/00042 amounting to <strong>1,250.00 EUR</strong>.</p>"
            + "<p>" + " ".join(f"line {n}: a paragraph of the quotation's terms."
                               for n in range(40)) + "</p></body></html>")

    def build(attachment_bytes: int) -> bytes:
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = f"My Company <{MAIL_FROM}>"
        msg["To"] = f"A Customer <{RCPT_TO[0]}>"
        msg["Subject"] = "Invoice INV/2024/00042 from My Company"
        msg["Date"] = formatdate(1_700_000_000, localtime=False)
        msg["Message-ID"] = make_msgid("bench", "bench.example.com")
        msg.set_content("Dear customer,\n\nPlease find attached your invoice.\n")
        msg.add_alternative(html, subtype="html")
        msg.add_attachment(rng.randbytes(attachment_bytes), maintype="application",
                           subtype="pdf", filename="INV_2024_00042.pdf")
        return msg.as_bytes()

    first = build(MESSAGE_BYTES * 3 // 4)
    return build(MESSAGE_BYTES * 3 // 4 - (len(first) - MESSAGE_BYTES) * 3 // 4)


# Senders (each in its own process) -------------------------------------------------

_raw: bytes = b""
_barrier = None


def _init_sender(raw: bytes, barrier) -> None:
    global _raw, _barrier
    _raw, _barrier = raw, barrier


def send(port: int, login: tuple[str, str] | None, count: int) -> None:
    """One connection, one login (when given), `count` mails; raises on any refusal."""
    with smtplib.SMTP(HOST, port, timeout=120) as client:
        client.ehlo()
        if login:
            client.login(*login)
        _barrier.wait(timeout=60)  # the four sessions are open before any mail goes
        for _ in range(count):
            client.sendmail(MAIL_FROM, RCPT_TO, _raw)


def blast(pool, port: int, login, per_sender: int) -> float:
    started = time.monotonic()
    futures = [pool.submit(send, port, login, per_sender) for _ in range(SENDERS)]
    for future in concurrent.futures.as_completed(futures):
        future.result()
    return time.monotonic() - started


# The two servers ---------------------------------------------------------------------

class Sink:
    """The bare baseline: takes every message and keeps nothing."""

    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def development_build(svc: Services) -> int:
    with svc.db.transaction() as conn:
        project = projects_store.create_project(
            conn, "bench-mail", svc.config.odoo.default_version, svc.config.database.role_prefix)
        branch, _ = projects_store.ensure_branch(conn, project, "bench-feature")
        build = builds_store.enqueue(conn, project=project, branch=branch, commit="0" * 40,
                                     message="bench")
    if build["stage"] != "development":
        raise SystemExit(f"the scratch build is {build['stage']}, not development")
    return build["id"]


def stored(svc: Services, build_id: int) -> int:
    with svc.db.transaction() as conn:
        count = conn.execute("SELECT count(*) AS n FROM mails WHERE build_id = %s",
                             (build_id,)).fetchone()["n"]
        conn.execute("TRUNCATE mails")
    return count


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", default=3, type=int)
    parser.add_argument("--mails", default=MAILS, type=int,
                        help=f"a round's mails to each server, a multiple of {SENDERS}")
    parser.add_argument("--config", type=Path,
                        default=Path(os.environ.get("APPLIANCE_CONFIG",
                                                    ROOT / "var" / "appliance.toml")))
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_MAILS} mails, one round: checks the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.mails = 1, SMOKE_MAILS
    if args.rounds < 1 or args.mails < SENDERS or args.mails % SENDERS:
        parser.error(f"needs at least 1 round and a multiple of {SENDERS} mails")
    return args


def main() -> None:
    args = arguments()
    mails = args.mails
    cfg = config_mod.load(args.config)
    raw = message()
    per_sender = mails // SENDERS
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    barrier = ctx.Barrier(SENDERS)
    catcher = sink = None
    caught, bare = [], []
    with scratch_state(cfg, "mail") as db:
        try:
            svc = Services(cfg, db)
            build_id = development_build(svc)
            login = mail_jobs.credentials(svc, build_id)
            catcher = smtp.Catcher(HOST, free_port(), authenticate=mail_jobs.Senders(svc),
                                   save_batch=lambda batch: mail_jobs.save(svc, batch),
                                   max_message_bytes=cfg.mail.max_message_bytes,
                                   max_recipients=cfg.mail.max_recipients)
            catcher.start()
            sink = Controller(Sink(), hostname=HOST, port=free_port(),
                              data_size_limit=cfg.mail.max_message_bytes, decode_data=False)
            sink.start()
            with concurrent.futures.ProcessPoolExecutor(
                    SENDERS, mp_context=ctx, initializer=_init_sender,
                    initargs=(raw, barrier)) as pool:
                ways = [("catcher", catcher.port, login), ("bare", sink.port, None)]
                for _, port, credentials in ways:  # warm-up, not counted
                    blast(pool, port, credentials, WARMUP_MAILS)
                stored(svc, build_id)
                for n in range(args.rounds):
                    for label, port, credentials in (ways if n % 2 == 0 else ways[::-1]):
                        rate = mails / blast(pool, port, credentials, per_sender)
                        if label == "bare":
                            bare.append(rate)
                            continue
                        count = stored(svc, build_id)
                        if count != mails:
                            raise SystemExit(f"round {n + 1}: the catcher stored {count} of "
                                             f"{mails} mails")
                        caught.append(rate)
        finally:
            if sink:
                sink.stop()
            if catcher:
                catcher.stop()
    c, b = statistics.median(caught), statistics.median(bare)
    print(f"mail catcher, {mails:,} mails of {len(raw) / 1024:.0f} KB from {SENDERS} senders "
          f"(one connection each), median of {args.rounds} rounds:")
    print(f"  catcher (login, stored)  {c:7.0f} mails/s   "
          f"(each: {', '.join(f'{x:.0f}' for x in caught)})")
    print(f"  bare aiosmtpd sink       {b:7.0f} mails/s   "
          f"(each: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"  ratio catcher/bare       {c / b:7.2f}          (target: >= 0.5)")


if __name__ == "__main__":
    main()
