"""Storing what a geo peer ships: the events of one page of its log feed (``geo_feed``)
that this site lacks, with the peer's position, in one transaction.

- The events of this site's own streams are dropped (a peer forwards everything it
  holds, this site's included), and so are those this site holds already by
  ``(originator_id, version)``, whether from this peer or another: nothing loops and
  nothing lands twice, whatever the topology.
- What is kept is stored with ``Tracking("peer:<site id>", through)`` in the same
  transaction (eventsourcing's process recorder). So a replicator killed at any point
  resumes from the last page committed. A page stored twice (a retry, a second
  replicator) fails on the tracking row instead of landing twice.
- Each event is checked first, as an import checks a bundle's (``replay/bundle.py``):
  of a kind this cargohold folds, of a schema no newer than it knows, decodable, a
  ``Created`` on the stream id its site and name make, and versions that follow what
  this site holds. A page that fails is refused whole (``FeedError``); the replicator
  stops on it, loudly, rather than skip an event.
- A page's events are this site's to keep whether or not its views fold them yet: the
  projection follows the log (``runner.catch_up``), as for any other writer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from cargohold.adapters.eventstore import LogReader, RegistryLog
from cargohold.domain.repository import Repository
from cargohold.domain.values import HLCTimestamp
from cargohold.replay.bundle import stored_state
from cargohold.replay.event_checks import CREATED_KINDS, EventChecks, EventRefused
from cargohold.replay.geo_feed import FeedError, FeedEvent, Page


def tracking_name(peer: UUID) -> str:
    """The tracking row of what this site took from ``peer``."""
    return f"peer:{peer}"


def shipped_position(log: RegistryLog, peer: UUID) -> int:
    """The last position of ``peer``'s log this site has taken (0: none)."""
    return int(log.recorder.max_tracking_id(tracking_name(peer)) or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PageStored:
    through: int  # the peer's position tracked now
    stored: int  # events written here
    present: int  # events this site held already
    own: int  # events of this site's own streams (dropped)
    latest: HLCTimestamp | None  # the greatest stamp among those written


def store_page(
    log: RegistryLog,
    site_id: UUID,
    page: Page,
    after: int,
    checks: EventChecks,
    names: NameOwners | None = None,
    on_blobs: Callable[[list[tuple[str, int]]], None] | None = None,
) -> PageStored:
    """Store what ``page`` (read from a peer after position ``after``) brings that this
    site lacks, and track the peer at its ``through``. Raises ``FeedError`` for a page
    that cannot be stored here; nothing is written then. ``names`` (the views) answers
    which stream holds an account, organisation or namespace name here; ``on_blobs`` is
    given the blobs the events to be stored name (digest, size), before they are stored
    (the blob fetcher's backlog)."""
    if page.site_id == site_id:
        raise FeedError(f"the peer is this site ({site_id}): check the peers setting")
    if page.after != after:
        raise FeedError(f"asked for the log after {after}, got a page after {page.after}")
    held = LogReader(log).versions([e.originator_id for e in page.events])
    batch: list[StoredEvent] = []
    claimed: dict[tuple[str, str], UUID] = {}
    refs: list[tuple[str, int]] = []
    present = own = 0
    latest: HLCTimestamp | None = None
    for event in page.events:
        # PERF: an event is named only when it is refused (a UUID's str costs)
        where = functools.partial(_where, event, page.site_id)
        try:
            cls, state = checks.check(event.originator_id, event.topic, event.state, where)
        except EventRefused as e:
            raise FeedError(str(e)) from None
        origin = state.get("site_id")
        if origin == site_id:
            own += 1
            continue
        have = held.get(event.originator_id, 0)
        if event.version <= have:
            present += 1
            continue
        if event.version != have + 1:
            raise FeedError(f"{where()} does not follow version {have} held here")
        held[event.originator_id] = event.version
        refs.extend(blob_refs(cls, state))
        kind = CREATED_KINDS.get(cls)
        if kind is not None and kind != "repository":
            _claim_identity(claimed, names, kind, str(state.get("name")), event, where)
        stamp = state.get("hlc")
        if isinstance(stamp, HLCTimestamp) and (latest is None or stamp > latest):
            latest = stamp
        batch.append(
            StoredEvent(
                originator_id=event.originator_id,
                originator_version=event.version,
                topic=event.topic,
                state=stored_state(log.mapper, event.state),
            )
        )
    if refs and on_blobs is not None:
        on_blobs(refs)
    if page.through > after:
        try:
            log.recorder.insert_events(
                batch, tracking=Tracking(tracking_name(page.site_id), page.through)
            )
        except IntegrityError:
            # NOTE: another replicator (another worker or node) stored events of this
            # page meanwhile: nothing of this attempt was written; read on from the
            # position tracked now.
            raise PageRaced(shipped_position(log, page.site_id)) from None
    return PageStored(page.through, len(batch), present, own, latest)


def _where(event: FeedEvent, site: UUID) -> str:
    return f"event {event.originator_id} v{event.version} of site {site}"


class NameOwners(Protocol):
    def identity_stream(self, kind: str, name: str) -> UUID | None:
        """The stream that holds the account, organisation or namespace ``name`` here
        (``kind``: ``account`` | ``organization`` | ``namespace``), or None."""


def _claim_identity(
    claimed: dict[tuple[str, str], UUID],
    names: NameOwners | None,
    kind: str,
    name: str,
    event: Any,
    where: Callable[[], str],
) -> None:
    """Refuse a second stream of an identity name (``FeedError``).

    NOTE: the views fold every site's streams of a *repository* name into one
    (``projections/merge.py``); accounts, organisations and namespaces are not folded
    that way yet (docs/geo-replication.md), so one created at two sites before they
    heard of each other stops replication here, loudly, instead of stopping the views.
    """
    owner = claimed.get((kind, name))
    if owner is None and names is not None:
        owner = names.identity_stream(kind, name)
    if owner is not None and owner != event.originator_id:
        raise FeedError(
            f"{where()} creates the {kind} {name}, which this site holds in another stream: "
            "an account, organisation or namespace created at two sites is not merged "
            "yet; rename or remove it at one of them"
        )
    claimed[(kind, name)] = event.originator_id


class PageRaced(Exception):
    """Another replicator stored the page first; ``position`` is the one tracked now."""

    def __init__(self, position: int) -> None:
        super().__init__(f"another replicator moved the position to {position}")
        self.position = position


def blob_refs(cls: type, state: Any) -> list[tuple[str, int]]:
    """The blobs an event names that a site must hold to serve it: a linked blob, a
    pushed manifest's bytes."""
    if cls is Repository.BlobLinked or cls is Repository.ManifestPushed:
        return [(str(state["digest"]), int(state["size"]))]
    return []
