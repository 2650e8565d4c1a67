"""Failed sign-ins, counted per account and per client address, and the locks they earn.

The counters live in the state database (`login_throttle`), so a restart forgets nothing
and every request thread, of every process, sees the same. An attempt holds both of its
rows locked from the check until its result is counted: two requests at once cannot both
slip in under the limit, and a locked account's password is never even checked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Failures allowed before a lock: enough for typos, too few for guessing.
FREE_FAILURES = 5
# The lock after the last free failure; each further failure doubles it...
FIRST_LOCK_SECONDS = 60
# ...up to an hour: about two dozen guesses a day per account or address at most.
LONGEST_LOCK_SECONDS = 3600
# Counting restarts after this long without a failure (measured from the end of a lock).
QUIET = dt.timedelta(minutes=15)
# Account names are at most 64 characters: anything longer is cut, it matches no one.
MAX_KEY = 100


@dataclass(frozen=True)
class Lock:
    scope: str            # 'account' or 'address'
    key: str              # the account name as typed, or the client address
    until: dt.datetime
    seconds: int          # how long from now, rounded up

    @property
    def subject(self) -> str:
        """Whose failures locked it, as the person at the login page reads it."""
        return "this account" if self.scope == "account" else "your address"


def lock_seconds(failures: int) -> int:
    """How long `failures` failures in a row lock the door."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_LOCK_SECONDS * 2 ** (failures - FREE_FAILURES), LONGEST_LOCK_SECONDS)


def _seconds(delta: dt.timedelta) -> int:
    return max(1, int(-(-delta.total_seconds() // 1)))


class Attempt:
    """One sign-in attempt's hold on its two counters, for the rest of the transaction."""

    def __init__(self, conn, account: str, address: str):
        self.conn = conn
        self.keys = (("account", account[:MAX_KEY]), ("address", address[:MAX_KEY]))
        for scope, key in self.keys:  # always account before address: no deadlock
            conn.execute("""INSERT INTO login_throttle (scope, key, forget_at)
                            VALUES (%s, %s, now()) ON CONFLICT DO NOTHING""", (scope, key))
        self.rows = conn.execute(
            """SELECT *, now() AS now FROM login_throttle
               WHERE (scope, key) IN ((%s, %s), (%s, %s)) ORDER BY scope FOR UPDATE""",
            (*self.keys[0], *self.keys[1])).fetchall()

    @property
    def lock(self) -> Lock | None:
        """The longest lock in force on this account or this address, if any."""
        locks = [Lock(row["scope"], row["key"], row["locked_until"],
                      _seconds(row["locked_until"] - row["now"]))
                 for row in self.rows if row["locked_until"] and row["locked_until"] > row["now"]]
        return max(locks, key=lambda lock: lock.until, default=None)

    def failed(self) -> list[Lock]:
        """Count a failure on both counters; the locks this failure starts."""
        started = []
        for row in self.rows:
            now = row["now"]
            failures = 1 if row["forget_at"] < now else row["failures"] + 1
            seconds = lock_seconds(failures)
            until = now + dt.timedelta(seconds=seconds) if seconds else None
            self.conn.execute(
                """UPDATE login_throttle SET failures = %s, locked_until = %s, forget_at = %s
                   WHERE scope = %s AND key = %s""",
                (failures, until, (until or now) + QUIET, row["scope"], row["key"]))
            if until:
                started.append(Lock(row["scope"], row["key"], until, seconds))
        self.conn.execute("DELETE FROM login_throttle WHERE forget_at < now()")
        return started

    def succeeded(self) -> None:
        """The account's count starts again; the address keeps its own."""
        self.conn.execute(
            """DELETE FROM login_throttle WHERE (scope = 'account' AND key = %s)
               OR (scope = 'address' AND key = %s AND failures = 0)""",
            (self.keys[0][1], self.keys[1][1]))
