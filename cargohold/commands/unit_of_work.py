"""The write side's one loop: load, decide, save, retry; then wait for the views.

Every command of every service (registry, identity, and the writers to come) runs through
``UnitOfWork.execute``:

1. take the aggregate's lock stripe: commands on one aggregate queue here within a
   process, so version conflicts come only from other processes or nodes;
2. build the command's ``EventContext`` (actor, site, one HLC reading, request id,
   client address);
3. ``load`` the aggregate (the caller's function: it may create it, or raise its own
   ``NotFound``), then ``decide``: the aggregate's methods check their guards and
   trigger events;
4. save every event of the command in one ``save()``;
5. on a version conflict (another writer saved the aggregate first), back off with
   jitter and start again at 2 with a fresh load, until the retry budget is spent
   (``ConcurrentModification``);
6. once saved, hand the aggregate to ``saved`` (the registry keeps it warm), leave the
   stripe, and return once the views show the events (read-your-writes).

``create`` saves aggregates that are new by construction (a user with its namespace
claim): a conflict there means the id exists, so it is not retried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, RecordConflictError

from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext
from cargohold.domain.errors import ConcurrentModification, DomainError
from cargohold.domain.values import Actor

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

#: The event log, as the commands use it: ``save``, ``repository.get`` and ``events.get``
#: of an eventsourcing ``Application`` (``adapters/eventstore.RegistryLog``).
EventLog = Application[UUID]


@dataclass(frozen=True)
class Caller:
    """Who issues a command, under which request id and from which network address (for
    the audit trail; ``None`` for the CLI and the system's own commands)."""

    actor: Actor
    request_id: str
    client_address: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How long a command keeps retrying version conflicts; injectable for tests."""

    budget: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic

    def pause(self, attempt: int) -> None:
        """Back off before retry number ``attempt`` (1, 2, ...): jittered, doubling from
        2 ms, at most 50 ms."""
        self.sleep(self.jitter() * min(0.05, 0.001 * 2**attempt))


class ViewsWaiter(Protocol):
    def wait_for(self, position: int) -> None:
        """Return once the registry-critical views include notification ``position``."""


#: How far ahead of the wall clock a stamp met on a stream may move this process's
#: clock (``HybridLogicalClock.observe``); docs/geo-replication.md, "The clock".
MAX_CLOCK_AHEAD_MS = 60_000


class UnitOfWork:
    """Runs commands against ``log`` (see the module docstring). One per service: each
    has ``stripes`` locks of its own, so a command never waits on its own stripe."""

    def __init__(
        self,
        log: EventLog,
        views: ViewsWaiter,
        clock: HybridLogicalClock,
        site_id: UUID,
        *,
        retry: RetryPolicy | None = None,
        stripes: int = 64,
        max_clock_ahead_ms: int = MAX_CLOCK_AHEAD_MS,
    ) -> None:
        self.max_clock_ahead_ms = max_clock_ahead_ms
        self.log = log
        self.views = views
        self.clock = clock
        self.site_id = site_id
        self.retry = retry or RetryPolicy()
        self._stripes = tuple(threading.Lock() for _ in range(stripes))

    def context(self, caller: Caller) -> EventContext:
        """The provenance of one command of ``caller``, stamped now."""
        return EventContext(
            actor=caller.actor,
            site_id=self.site_id,
            hlc=self.clock.now(),
            request_id=caller.request_id,
            client_address=caller.client_address,
        )

    def find(self, aggregate_id: UUID) -> Any | None:
        """The aggregate as the log has it now (to read, not to change), or None."""
        try:
            return self.log.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def execute(
        self,
        aggregate_id: UUID,
        caller: Caller,
        load: Callable[[EventContext], A],
        decide: Callable[[A, EventContext], T],
        *,
        saved: Callable[[A], None] | None = None,
        busy: str = "too busy; try again",
    ) -> T:
        """Load, decide, save ``aggregate_id`` (retrying conflicts); ``decide``'s result.

        ``load`` raises what an absent aggregate means to the command; ``busy`` is the
        message of the ``ConcurrentModification`` raised once the budget is spent. An
        aggregate whose save failed holds unsaved events: it is dropped, never
        handed to ``saved``."""
        deadline = self.retry.monotonic() + self.retry.budget
        attempt = 0
        with self._stripes[aggregate_id.int % len(self._stripes)]:
            while True:
                ctx = self.context(caller)
                aggregate = load(ctx)
                last = getattr(aggregate, "last_hlc", None)
                if last is not None and last > ctx.hlc:
                    # Another process (or node) wrote the stream with a clock ahead of
                    # ours: decide with a stamp after its last one. (Events ``load``
                    # itself triggered, a recreation's, keep the earlier stamp.)
                    self.clock.observe(last, self.max_clock_ahead_ms)
                    ctx = self.context(caller)
                result = decide(aggregate, ctx)
                try:
                    recordings = self.log.save(aggregate)
                except (IntegrityError, RecordConflictError):
                    attempt += 1
                    if self.retry.monotonic() >= deadline:
                        raise ConcurrentModification(busy) from None
                    self.retry.pause(attempt)
                else:
                    if saved is not None:
                        saved(aggregate)
                    break
        self._wait(recordings)
        return result

    def create(self, aggregates: Sequence[Aggregate], taken: Callable[[], DomainError]) -> None:
        """Save new ``aggregates`` in one ``save()``; ``taken()`` is raised when one of
        their ids is stored already."""
        try:
            recordings = self.log.save(*aggregates)
        except (IntegrityError, RecordConflictError):
            raise taken() from None
        self._wait(recordings)

    def _wait(self, recordings: Sequence[Any]) -> None:
        if recordings:
            self.views.wait_for(max(r.notification.id for r in recordings))
