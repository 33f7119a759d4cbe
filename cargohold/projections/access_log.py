"""Pulls and logins, buffered in memory and written in batches to ``access_log``.

``access_log`` lives in the views database but is *not* a view: nothing in the event log
describes a pull, so this table is its own source of truth (``replay rebuild`` never
touches it). Its counts per scope, day and kind (``access_counts``, for the aggregates;
``projections/audit/counts.py``) are derived from it: each flush adds its batch's counts
in the batch's transaction, and ``recount_access`` recomputes them (when the table is
new on a data dir that has pulls, and at ``replay rebuild``). Its columns are the audit
log's (``projections/audit/entry.py``) with an ``id`` (assigned by the database) instead of
``position, sequence``::

    access_log
        id              BIGINT PRIMARY KEY  increasing; ties on time_ms break on it
        kind            TEXT                pull_repo | login_success | login_failure
        time, time_ms   TEXT, BIGINT        ISO 8601 UTC; epoch milliseconds
        namespace       TEXT                the repository's, or the account's
        repository      TEXT                ns/name, pulls only
        performer_kind, performer_name, ip, request_id, metadata (JSON)

Writing: ``record`` appends to a deque under a lock and returns (the request thread
never waits for the database). A background thread (``start``) flushes every
``interval`` seconds, or sooner once ``batch_size`` entries wait, each flush one INSERT
batch (and its counts) in one transaction. A flush that fails is logged and retried at
the next tick, the entries kept in order; the buffer is bounded (``max_buffered``): past
it, the oldest entries are dropped, counted, and the count is logged at the next
successful flush, so a long outage costs memory that is capped and a loss that is
reported, never silent.
``close`` stops the thread and flushes what is left (``serve`` calls it after the server
stops, so a clean shutdown loses nothing).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from cargohold.domain.errors import StorageError
from cargohold.domain.ports import AccessRecord, Cursor, Database
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.entry import ENTRY_COLUMNS, dump_metadata, epoch_ms, iso

log = logging.getLogger(__name__)

TABLE = "access_log"
COUNTS = audit_counts.ACCESS_COUNTS
#: Indexes: the same access paths as the audit log's, each ending in the tie-breaker.
INDEXES = (
    ("time_ms", "id"),
    ("namespace", "time_ms", "id"),
    ("repository", "time_ms", "id"),
    ("performer_name", "time_ms", "id"),
    ("kind", "time_ms", "id"),
)


def create_access_log_table(c: Cursor, dialect: str) -> None:
    """Create ``access_log`` and its indexes unless they exist (idempotent)."""
    if dialect == "sqlite":
        key = "id INTEGER PRIMARY KEY"  # the rowid: assigned in insertion order
    else:
        key = "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    columns = ", ".join(
        f"{name} {'BIGINT' if name == 'time_ms' else 'TEXT'}" for name in ENTRY_COLUMNS
    )
    c.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({key}, {columns})")
    for index in INDEXES:
        c.execute(
            f"CREATE INDEX IF NOT EXISTS {TABLE}_{'_'.join(index)}_idx "
            f"ON {TABLE} ({', '.join(index)})"
        )
    audit_counts.create_counts_table(c, COUNTS)
    counted = c.execute(f"SELECT 1 FROM {COUNTS} LIMIT 1").fetchone()
    if counted is None and c.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is not None:
        # NOTE: a data dir from before the counts: count what is there once.
        recount_access(c, dialect)


def recount_access(c: Cursor, dialect: str) -> None:
    """Recompute ``access_counts`` from ``access_log`` (inside a write transaction).

    On PostgreSQL the counts table is locked first: a flush that started earlier has
    its increment in the recount or waits to add it after, never both or neither."""
    if dialect == "postgres":
        c.execute(f"LOCK TABLE {COUNTS} IN EXCLUSIVE MODE")
    audit_counts.recount(c, TABLE, COUNTS)


def copy_access_log(source: Database, target: Database, until_ms: int, batch: int = 5000) -> int:
    """Make ``target``'s ``access_log`` (created if missing) hold exactly ``source``'s
    entries up to ``until_ms`` (inclusive), in their order, with their counts; returns
    how many. For the registry as of a moment: its audit log shows the pulls and logins
    up to then. One transaction on ``target``: a reader sees the old copy or the new."""
    cols = ", ".join(ENTRY_COLUMNS)
    copied = 0
    with target.transaction() as c:
        create_access_log_table(c, target.dialect)
        c.execute(f"DELETE FROM {TABLE}")
        after = -1
        while True:
            rows = source.query(
                f"SELECT id, {cols} FROM {TABLE} WHERE time_ms <= ? AND id > ? ORDER BY id LIMIT ?",
                (until_ms, after, batch),
            )
            if not rows:
                break
            after = int(rows[-1][0])
            c.executemany(INSERT, [row[1:] for row in rows])
            copied += len(rows)
        recount_access(c, target.dialect)
    return copied


def row_of(entry: AccessRecord) -> tuple[Any, ...]:
    return (
        entry.kind,
        iso(entry.at),
        epoch_ms(entry.at),
        entry.namespace,
        entry.repository,
        entry.performer.kind.value,
        entry.performer.name,
        entry.ip,
        entry.request_id,
        dump_metadata(entry.metadata),
    )


INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
)


class BufferedAccessLog:
    """An ``AccessRecorder`` over ``access_log``; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float = 1.0,
        batch_size: int = 500,
        max_buffered: int = 100_000,
    ) -> None:
        self.db = db
        self.interval = interval
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self._buffer: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time keeps rows in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # entries lost to a full buffer, ever
        self._dropped_unreported = 0
        self.failures = 0  # flushes that failed, ever

    def create_table(self) -> None:
        with self.db.transaction() as c:
            create_access_log_table(c, self.db.dialect)

    # -- the request side --------------------------------------------------------------

    def record(self, entry: AccessRecord) -> None:
        """Buffer ``entry``; never blocks on the database."""
        row = row_of(entry)
        with self._lock:
            if len(self._buffer) >= self.max_buffered:
                self._buffer.popleft()
                self.dropped += 1
                self._dropped_unreported += 1
            self._buffer.append(row)
            full = len(self._buffer) >= self.batch_size
        if full:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    # -- the writer side ---------------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered, in batches of ``batch_size``; return how many rows.

        Raises ``StorageError`` when a batch fails (that batch and the rest stay
        buffered, in order, for the next flush)."""
        written = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = [
                        self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))
                    ]
                if not batch:
                    break
                self._write(batch)
                with self._lock:
                    # NOTE: only ``record`` runs meanwhile, and it appends at the right
                    # or drops at the left; drop from the left what was written, unless
                    # the overflow already did.
                    for _ in range(len(batch)):
                        if not self._buffer:
                            break
                        self._buffer.popleft()
                    reported, self._dropped_unreported = self._dropped_unreported, 0
                if reported:
                    log.error(
                        "access log: %d pull/login entries were dropped while the database "
                        "was failing (buffer full at %d)",
                        reported,
                        self.max_buffered,
                    )
                written += len(batch)
        return written

    def _write(self, batch: Sequence[tuple[Any, ...]]) -> None:
        counts = audit_counts.tally((r[0], r[2], r[3], r[4]) for r in batch)
        with self.db.transaction() as c:
            # NOTE: the counts first, then the rows; see ``recount_access``.
            audit_counts.add(c, COUNTS, counts)
            c.executemany(INSERT, batch)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except StorageError as e:
            self.failures += 1
            log.warning(
                "access log: flush failed (%s); %d entries kept for the next try",
                e.message,
                self.pending(),
            )
        except Exception:  # NOTE: the thread must survive anything; retried next tick
            self.failures += 1
            log.exception("access log: flush failed; %d entries kept", self.pending())

    def start(self) -> None:
        """Flush in a daemon thread every ``interval`` seconds (or at ``batch_size``)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                self._flush_logged()

        self._thread = threading.Thread(target=loop, name="access-log-writer", daemon=True)
        self._thread.start()

    def close(self, attempts: int = 5, pause: float = 0.5) -> None:
        """Stop the thread and write what is left, retrying a failing database a few
        times; whatever still cannot be written is logged as lost."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for attempt in range(attempts):
            try:
                self.flush()
                return
            except StorageError as e:
                self.failures += 1
                log.warning("access log: final flush failed (%s)", e.message)
                if attempt + 1 < attempts:
                    time.sleep(pause)
        log.error("access log: %d pull/login entries lost at shutdown", self.pending())
