"""The login throttle (``LoginThrottle``): per account and per source address, failures
cost a growing delay (``login_delay``).

Two adapters pass one contract suite (``tests/contract/test_login_throttle.py``):

- ``MemoryLoginThrottle`` counts per process (tools and tests);
- ``SQLLoginThrottle`` keeps the counts in the views database, shared by every worker
  and every node: ``serve --workers N`` or N nodes behind one PostgreSQL would otherwise
  give an attacker N times the attempts. Its one table::

    login_failures
        key           TEXT PRIMARY KEY    "account:<name>" or "address:<ip>"
        count         BIGINT              failures since the last success
        last_failure  DOUBLE PRECISION    wall-clock seconds (time.time) of the latest one

  Like the upload-session table it is not a read model: nothing in the log describes it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cargohold.domain.credentials import LoginThrottle
from cargohold.domain.ports import Cursor, Database


@dataclass
class _Failures:
    count: int
    last: float


class _FailureTable:
    """Failure counts per key, least recently failed evicted past ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._rows: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> _Failures | None:
        return self._rows.get(key)

    def fail(self, key: str, now: float) -> None:
        row = self._rows.pop(key, None)
        self._rows[key] = _Failures(row.count + 1 if row else 1, now)
        while len(self._rows) > self._max:
            self._rows.popitem(last=False)

    def forget(self, key: str) -> None:
        self._rows.pop(key, None)


def login_delay(count: int, free_failures: int, base_delay: float, max_delay: float) -> float:
    """Seconds to wait after ``count`` failures: none for the first ``free_failures``, then
    ``base_delay`` doubling with each further failure, never more than ``max_delay``."""
    over = count - free_failures
    if over <= 0:
        return 0.0
    # min() on the exponent first so a huge count cannot overflow the float.
    return min(base_delay * 2.0 ** min(over - 1, 64), max_delay)


class MemoryLoginThrottle(LoginThrottle):
    """In-process throttle: after ``free_failures`` failures, wait ``base_delay`` seconds,
    doubling with each further failure up to ``max_delay``. The wait runs from the last
    failure. Accounts and addresses are counted in separate tables.

    Memory is bounded: each table keeps at most ``max_entries`` keys, evicting the one
    whose last failure is oldest. NOTE: a flood of failures from many keys can therefore
    evict a throttled key early; the cap trades that for never running out of memory.
    State is per process (instances do not share it) and lost on restart.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_entries: int = 100_000,
    ) -> None:
        self._clock = clock
        self._free = free_failures
        self._base = base_delay
        self._cap = max_delay
        self._lock = threading.Lock()
        self._accounts = _FailureTable(max_entries)
        self._addresses = _FailureTable(max_entries)

    def _delay(self, count: int) -> float:
        return login_delay(count, self._free, self._base, self._cap)

    def _wait(self, row: _Failures | None, now: float) -> float:
        if row is None:
            return 0.0
        return max(0.0, row.last + self._delay(row.count) - now)

    def check(self, account: str, address: str) -> float:
        now = self._clock()
        with self._lock:
            return max(
                self._wait(self._accounts.get(account), now),
                self._wait(self._addresses.get(address), now),
            )

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._accounts.fail(account, now)
            self._addresses.fail(address, now)

    def succeeded(self, account: str, address: str) -> None:
        with self._lock:
            self._accounts.forget(account)
            self._addresses.forget(address)

    def tracked(self) -> tuple[int, int]:
        """How many (accounts, addresses) are remembered; for tests and metrics."""
        with self._lock:
            return len(self._accounts), len(self._addresses)


_ACCOUNT = "account:"
_ADDRESS = "address:"


class SQLLoginThrottle(LoginThrottle):
    """The ``MemoryLoginThrottle`` schedule over a shared SQL table (SQLite or PostgreSQL).

    After ``free_failures`` failures, wait ``base_delay`` seconds, doubling with each
    further failure up to ``max_delay``; the wait runs from the last failure. Every
    instance over the same database shares the counts, and ``failed`` is one atomic
    upsert, so N concurrent failures from N processes count N.

    ``clock`` is wall-clock time (``time.time``) by default, not monotonic: a monotonic
    clock means nothing to another process or host reading the row. A host whose clock is
    ahead cannot lock anyone out for longer than the delay itself: a wait is clamped to
    the delay its count earns, and ``last_failure`` never moves backwards.

    The table is bounded by time: a key with no failure for ``forget_after`` seconds is
    forgotten (its count starts again from zero), and ``failed`` deletes such rows. NOTE:
    pruning as soon as the delay has run out would reset the count after every wait and
    hand the attacker ``free_failures`` fresh attempts per ``max_delay``; so
    ``forget_after`` must be at least ``max_delay`` (else ``ValueError``), and by default
    is an hour. The table holds at most the keys that failed within ``forget_after``.

    Call ``create_table`` once (at bootstrap, before forking workers).
    """

    def __init__(
        self,
        db: Database,
        clock: Callable[[], float] = time.time,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        forget_after: float = 3600.0,
    ) -> None:
        if forget_after < max_delay:
            raise ValueError(
                f"forget_after ({forget_after}) must be at least max_delay ({max_delay})"
            )
        self.db = db
        self._clock = clock
        self._forget_after = forget_after
        self._free = free_failures
        self._base = base_delay
        self._cap = max_delay

    def create_table(self) -> None:
        """Create the table and its pruning index unless they exist (idempotent)."""
        with self.db.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS login_failures (key TEXT PRIMARY KEY, "
                "count BIGINT NOT NULL, last_failure DOUBLE PRECISION NOT NULL)"
            )
            c.execute(
                "CREATE INDEX IF NOT EXISTS login_failures_by_last_failure "
                "ON login_failures (last_failure)"
            )

    def check(self, account: str, address: str) -> float:
        now = self._clock()
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT count, last_failure FROM login_failures WHERE key IN (?, ?)",
                (_ACCOUNT + account, _ADDRESS + address),
            ).fetchall()
        return max((self._wait(int(n), float(last), now) for n, last in rows), default=0.0)

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        with self.db.transaction() as c:
            # Prune first, in the same transaction: a key forgotten here is re-inserted
            # below with a count of one, as if it had never failed.
            self._prune(c, now)
            # NOTE: the account key sorts before the address key and is always written
            # first, so two concurrent calls lock rows in the same order (no deadlock).
            for key in (_ACCOUNT + account, _ADDRESS + address):
                c.execute(
                    "INSERT INTO login_failures (key, count, last_failure) VALUES (?, 1, ?) "
                    "ON CONFLICT (key) DO UPDATE SET "
                    "count = login_failures.count + 1, "
                    "last_failure = CASE WHEN excluded.last_failure > login_failures.last_failure "
                    "THEN excluded.last_failure ELSE login_failures.last_failure END",
                    (key, now),
                )

    def succeeded(self, account: str, address: str) -> None:
        with self.db.transaction() as c:
            c.execute(
                "DELETE FROM login_failures WHERE key IN (?, ?)",
                (_ACCOUNT + account, _ADDRESS + address),
            )

    def prune(self) -> int:
        """Delete the keys with no failure for ``forget_after`` seconds; how many went.

        ``failed`` already does this; for a periodic sweep when failures stop.
        """
        with self.db.transaction() as c:
            return self._prune(c, self._clock())

    def tracked(self) -> tuple[int, int]:
        """How many (accounts, addresses) are remembered; for tests and metrics."""
        counted = "COALESCE(SUM(CASE WHEN SUBSTR(key, 1, {n}) = ? THEN 1 ELSE 0 END), 0)"
        with self.db.transaction(write=False) as c:
            row = c.execute(
                f"SELECT {counted.format(n=len(_ACCOUNT))}, {counted.format(n=len(_ADDRESS))} "
                "FROM login_failures",
                (_ACCOUNT, _ADDRESS),
            ).fetchone()
        assert row is not None  # an aggregate always returns one row
        return int(row[0]), int(row[1])

    def _prune(self, c: Cursor, now: float) -> int:
        c.execute("DELETE FROM login_failures WHERE last_failure < ?", (now - self._forget_after,))
        return max(c.rowcount, 0)

    def _wait(self, count: int, last_failure: float, now: float) -> float:
        delay = login_delay(count, self._free, self._base, self._cap)
        # Clamped to the delay: a row written by a host whose clock runs ahead of ours
        # must not lock the key out for longer than its count earns.
        return min(delay, max(0.0, last_failure + delay - now))
