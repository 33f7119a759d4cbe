"""A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).

Readings are ``HLCTimestamp(wall_ms, logical)``: the largest wall-clock millisecond seen so
far (locally or in a message from a peer site) plus a counter that breaks ties and keeps
readings strictly increasing when the wall clock stalls or steps backwards. Ties between
sites are broken by site id in the merge rules, not here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cargohold.domain.values import HLCTimestamp


def system_wall_ms() -> int:
    """Milliseconds since the Unix epoch, from the system's real-time clock."""
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """A thread-safe hybrid logical clock.

    ``wall_ms`` is injected so that tests can drive the physical clock. The clock keeps
    its last reading in memory only: a process restarted after the wall clock stepped
    back may hand out readings below those of its previous life.
    """

    def __init__(self, wall_ms: Callable[[], int] = system_wall_ms) -> None:
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._last = HLCTimestamp(0, 0)
        #: How many readings ``observe`` bounded (see ``max_ahead_ms``).
        self.clamped = 0

    @property
    def last(self) -> HLCTimestamp:
        """The most recent reading handed out (``HLCTimestamp(0, 0)`` before any)."""
        with self._lock:
            return self._last

    def now(self) -> HLCTimestamp:
        """A reading for a local event (the HLC send rule).

        Strictly greater than every reading this clock returned before, from ``now`` or
        ``observe``, whatever the wall clock does.
        """
        physical = self._wall_ms()
        with self._lock:
            last = self._last
            if physical > last.wall_ms:
                reading = HLCTimestamp(physical, 0)
            else:
                reading = HLCTimestamp(last.wall_ms, last.logical + 1)
            self._last = reading
            return reading

    def observe(self, remote: HLCTimestamp, max_ahead_ms: int | None = None) -> HLCTimestamp:
        """Merge a reading met elsewhere (the HLC receive rule): another site's event, or
        the last event of a stream that another process wrote.

        Returns a reading strictly greater than both ``remote`` and every reading this
        clock returned before; later readings stay above it. With ``max_ahead_ms``, a
        ``remote`` further than that ahead of the wall clock moves this clock only that
        far (and counts in ``clamped``): one bad clock elsewhere must not drag every site
        into the future. The event keeps its stamp; only this clock is bounded.
        """
        physical = self._wall_ms()
        with self._lock:
            if max_ahead_ms is not None and remote.wall_ms > physical + max_ahead_ms:
                remote = HLCTimestamp(physical + max_ahead_ms, 0)
                self.clamped += 1
            last = self._last
            wall = max(last.wall_ms, remote.wall_ms, physical)
            if wall == last.wall_ms and wall == remote.wall_ms:
                logical = max(last.logical, remote.logical) + 1
            elif wall == last.wall_ms:
                logical = last.logical + 1
            elif wall == remote.wall_ms:
                logical = remote.logical + 1
            else:
                logical = 0
            reading = HLCTimestamp(wall, logical)
            self._last = reading
            return reading


def epoch_ms(moment: datetime) -> int:
    """An aware moment in milliseconds since the Unix epoch (the unit of HLC readings,
    which is what the time machine measures by)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stamp(at_ms: int) -> str:
    """``at_ms`` as ISO 8601 UTC with milliseconds (``2026-11-24T15:00:00.000Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000)) + (
        f".{at_ms % 1000:03d}Z"
    )
