"""The catcher's SMTP side, without a database: logins, limits, a message that cannot be
stored, and a stop while messages are being stored."""

from __future__ import annotations

import smtplib
import threading
import time

import pytest

from appliance.runtime.smtp import Catcher
from tests.integration.harness import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Store:
    """Keeps messages; refuses any batch holding one with b'UNSTORABLE'; may be slow."""

    def __init__(self, delay: float = 0.0):
        self.saved: list = []
        self.batches: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, batch):
        time.sleep(self.delay)
        if any(b"UNSTORABLE" in caught.raw for caught in batch):
            raise ValueError("cannot store that")
        with self.lock:
            self.batches.append(len(batch))
            start = len(self.saved)
            self.saved.extend(batch)
            return list(range(start + 1, start + 1 + len(batch)))


def catcher(store: Store) -> Catcher:
    return Catcher("127.0.0.1", free_port(),
                   authenticate=lambda user, password: user if password == "pw" else None,
                   save_batch=store, max_message_bytes=10_000, max_recipients=3)


def send(server: Catcher, raw: bytes, user: str = "build-1") -> dict:
    with smtplib.SMTP(server.host, server.port, timeout=30) as client:
        client.login(user, "pw")
        return client.sendmail("a@example.com", ["b@example.org"], raw)


def test_a_message_that_cannot_be_stored_gets_451_and_the_others_of_its_batch_are_kept():
    store = Store(delay=0.2)
    server = catcher(store)
    server.start()
    try:
        outcomes: dict = {}

        def sender(name: str, raw: bytes):
            try:
                send(server, raw)
                outcomes[name] = 250
            except smtplib.SMTPDataError as exc:
                outcomes[name] = exc.smtp_code

        threads = [threading.Thread(target=sender, args=(f"m{i}", f"Subject: {i}\r\n\r\nok".encode()))
                   for i in range(4)]
        threads.append(threading.Thread(target=sender, args=("bad", b"Subject: UNSTORABLE\r\n\r\nx")))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert outcomes == {"m0": 250, "m1": 250, "m2": 250, "m3": 250, "bad": 451}
        assert len(store.saved) == 4
        assert send(server, b"Subject: after\r\n\r\nstill serving") == {}
    finally:
        server.stop()


def test_stopping_answers_the_messages_being_stored_and_stores_each_once():
    store = Store(delay=1.0)
    server = catcher(store)
    server.start()
    answers: list = []

    def sender(i: int):
        try:
            send(server, f"Subject: {i}\r\n\r\nbody".encode())
            answers.append(250)
        except (smtplib.SMTPException, OSError) as exc:
            answers.append(repr(exc))

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # all three are in DATA, the first batch is being stored
    server.stop()
    for thread in threads:
        thread.join(30)
    stored = sorted(caught.raw for caught in store.saved)
    assert len(stored) == len(set(stored))
    # What was stored was answered 250; what was not is the sender's to send again.
    assert answers.count(250) == len(stored) and len(answers) == 3


def test_no_login_wrong_password_too_big_and_too_many_recipients_are_refused():
    server = catcher(Store())
    server.start()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nx")
            assert refused.value.smtp_code == 530
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("build-1", "wrong")
            client.login("build-1", "pw")
            with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
                client.sendmail("a@example.com", ["b@example.org"], b"x" * 20_000)
            assert too_big.value.smtp_code == 552
        with smtplib.SMTP(server.host, server.port, timeout=30) as client:
            client.login("build-1", "pw")
            refused = client.sendmail("a@example.com", [f"r{i}@example.org" for i in range(5)],
                                      b"Subject: many\r\n\r\nx")
            assert sorted(refused) == ["r3@example.org", "r4@example.org"]
    finally:
        server.stop()
