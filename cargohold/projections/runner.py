"""Drives the registry projection: reads the log from its tracked position and applies it.

Each batch is one transaction that *first* advances the tracking row by compare-and-set
(``UPDATE tracking SET position = new WHERE position = old``) and then writes the view
rows. So a crash never half-applies a batch, and two processes (several ``serve`` nodes
on one database) racing to apply the same events serialise on the tracking row: the
loser's transaction finds the row moved, rolls back and re-reads.

Read-your-writes: a command saves its events, then calls ``wait_for(position)``, which
returns at once when the views are known to be there, and otherwise applies the missing
events itself (no sleeping, no polling). A background poller (``start``) only matters for
events written by other processes or imported from other sites.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cargohold.domain.ports import Cursor, Database
from cargohold.projections.audit.counts import CountKey
from cargohold.projections.merge import StreamHistory
from cargohold.projections.projector import RegistryProjector
from cargohold.projections.schema import create_tables
from cargohold.projections.writes import BatchedWrites

log = logging.getLogger(__name__)

PROJECTION_NAME = "registry"


class EventSource(Protocol):
    """The log, as the projection reads it."""

    def head(self) -> int:
        """The highest notification id stored (0 when the log is empty)."""

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        """Up to ``limit`` (notification id, domain event) pairs with id > ``after`` (and
        <= ``stop`` when given), in id order."""


class _LostRace(Exception):
    pass


class LatencyRecorder:
    """A bounded reservoir of read-your-writes waits, for p50/p99 reporting."""

    def __init__(self, size: int = 10_000) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def percentiles(self, *ps: float) -> list[float]:
        with self._lock:
            data = sorted(self._samples)
        if not data:
            return [0.0 for _ in ps]
        return [data[min(len(data) - 1, int(p / 100 * len(data)))] for p in ps]

    def __len__(self) -> int:
        return len(self._samples)


class ProjectionRunner:
    def __init__(
        self,
        db: Database,
        source: EventSource,
        projector: RegistryProjector | None = None,
        *,
        batch_size: int = 2000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.db = db
        self.source = source
        self.projector = projector or RegistryProjector()
        self.batch_size = batch_size
        self.latency = LatencyRecorder()
        self._clock = clock
        self._lock = threading.Lock()
        self._known = 0  # a position the live views are known to have reached
        self._stop = threading.Event()
        self._nudged = threading.Event()
        self._held_until = 0.0  # time.monotonic(): the poller leaves the log to others
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    # -- setup -------------------------------------------------------------------------

    def create_tables(self, ns: str = "", *, indexes: bool = True, clustered: bool = False) -> None:
        """Create the views in ``ns`` (see ``schema.create_tables`` for ``indexes`` and
        ``clustered``)."""
        with self.db.transaction() as c:
            create_tables(c, self.db.dialect, ns, indexes=indexes, clustered=clustered)
            c.execute(
                f"INSERT INTO {ns}tracking (name, position) VALUES (?, 0) "
                "ON CONFLICT (name) DO NOTHING",
                (PROJECTION_NAME,),
            )

    # -- positions ---------------------------------------------------------------------

    def position(self, ns: str = "") -> int:
        with self.db.transaction(write=False) as c:
            return self.read_position(c, ns)

    @staticmethod
    def read_position(c: Cursor, ns: str = "") -> int:
        row = c.execute(
            f"SELECT position FROM {ns}tracking WHERE name = ?", (PROJECTION_NAME,)
        ).fetchone()
        if row is None:
            raise RuntimeError(f"views in {ns or 'live'} namespace are not initialised")
        return int(row[0])

    # -- applying ----------------------------------------------------------------------

    def apply_batch(self, c: Cursor, ns: str, after: int, batch: Sequence[tuple[int, Any]]) -> int:
        """Inside an open transaction: advance tracking from ``after`` then apply ``batch``.

        Raises ``_LostRace`` when the tracking row is not at ``after`` any more.
        """
        last = batch[-1][0]
        c.execute(
            f"UPDATE {ns}tracking SET position = ? WHERE name = ? AND position = ?",
            (last, PROJECTION_NAME, after),
        )
        if c.rowcount != 1:
            raise _LostRace()
        writes = BatchedWrites(c)
        apply = self.projector.apply
        counts: collections.Counter[CountKey] = collections.Counter()
        for position, event in batch:
            apply(writes, ns, event, position, counts)
        history = self.source if isinstance(self.source, StreamHistory) else None
        self.projector.finish_batch(writes, ns, last, history)
        writes.flush()
        self.projector.add_counts(c, ns, counts)
        return last

    def catch_up(
        self,
        ns: str = "",
        stop: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Apply every stored event past the tracked position (up to ``stop``); return the
        position reached. Safe to call from any thread and any process."""
        with self._lock:
            return self._catch_up_locked(ns, stop, progress)

    def _catch_up_locked(
        self, ns: str, stop: int | None, progress: Callable[[int], None] | None
    ) -> int:
        # PERF: the live position this runner last saw is a safe start without a read:
        # tracking never moves back, and if another process moved it further, the
        # compare-and-set of the first batch fails and the position is read then.
        position = self._known if not ns and self._known else self.position(ns)
        while True:
            batch = self.source.read(position, self.batch_size, stop)
            if not batch:
                break
            try:
                with self.db.transaction() as c:
                    position = self.apply_batch(c, ns, position, batch)
            except _LostRace:
                position = self.position(ns)
                continue
            if progress is not None:
                progress(position)
        if not ns:
            self._known = max(self._known, position)
        return position

    def wait_for(self, position: int) -> None:
        """Return once the live views include notification ``position`` (read-your-writes)."""
        started = self._clock()
        if self._known < position:
            with self._lock:
                # PERF: concurrent commands queue here; the catch-up of the one before
                # has often applied this command's events too.
                if self._known < position:
                    reached = self._catch_up_locked("", None, None)
                    if reached < position:
                        raise RuntimeError(
                            f"views stopped at {reached} before position {position}"
                        )  # pragma: no cover - the log never loses a saved event
        self.latency.add(self._clock() - started)

    # -- background polling ------------------------------------------------------------

    def start(self, interval: float = 0.5) -> None:
        """Poll the log in a daemon thread, for events written by other processes (every
        ``interval`` seconds, or at once when ``nudge``d)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                self._nudged.wait(interval)
                self._nudged.clear()
                if self._stop.is_set():
                    return
                if time.monotonic() < self._held_until:
                    continue
                try:
                    self.catch_up()
                except BaseException as e:  # NOTE: stop loudly, never skip an event
                    self.failure = e
                    log.critical("projection stopped: %s", e)
                    return

        self._thread = threading.Thread(target=loop, name="projection-poller", daemon=True)
        self._thread.start()

    def hold(self, seconds: float) -> None:
        """Have the poller leave the log to the other processes' pollers for ``seconds``
        (or until ``nudge``): the geo replicator, while it stores a backlog, keeps this
        process's CPU for storing (``geo_replicator``). Callers that wait for their own
        events (``catch_up``) still fold here."""
        self._held_until = time.monotonic() + seconds

    def nudge(self) -> None:
        """Have the poller catch up now, in its thread (a writer that must not wait for
        the views: the geo replicator), ending a ``hold``. Without a poller, catch up
        here."""
        self._held_until = 0.0
        if self._thread is None:
            self.catch_up()
        else:
            self._nudged.set()

    def stop(self) -> None:
        self._stop.set()
        self._nudged.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
