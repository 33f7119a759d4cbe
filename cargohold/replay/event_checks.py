"""What an event written elsewhere must be before this site stores it: the checks that
an import makes of a bundle's events (``bundle_import.py``) and a replicator makes of a
geo peer's (``geo_store.py``).

- Its kind is one this cargohold's projection folds: an unknown one would stop the
  views (a newer version wrote it).
- Its state decodes to a map, of a schema version no newer than the class knows.
- A ``Created`` is on the stream id that its site and name make. A forged one could
  otherwise pass off a stream as another site's, or as this site's own.

Version order within a stream is the caller's to check: a bundle's events must follow
each other, and a peer's must follow what this site holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.utils import resolve_topic

from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.repository import Repository

#: The ``Created`` event of each kind of named stream, and the kind's name.
CREATED_KINDS: dict[type, str] = {
    Repository.Created: "repository",
    Account.Created: "account",
    Organization.Created: "organization",
    NamespaceClaim.Created: "namespace",
}

_STREAM_IDS: dict[type, Callable[[UUID, Any], UUID]] = {
    Repository.Created: Repository.create_id,
    Account.Created: Account.create_id,
    Organization.Created: Organization.create_id,
    NamespaceClaim.Created: NamespaceClaim.create_id,
}


class EventRefused(Exception):
    """The event cannot be stored here; the message says why."""


class EventChecks:
    """The checks, for the event classes ``handled`` (the projection's) and this site's
    ``transcoder``; topics met are remembered."""

    def __init__(self, handled: frozenset[type], transcoder: Any) -> None:
        self._handled = handled
        self._transcoder = transcoder
        self._topics: dict[str, type] = {}

    def check(
        self,
        originator_id: UUID | str,
        topic: str,
        state: bytes,
        where: str | Callable[[], str],
    ) -> tuple[type, Any]:
        """The event's class and decoded state; raises ``EventRefused``, whose message
        starts with ``where`` (or what it returns: PERF, a replicator names an event only
        when it refuses one), which names the event."""
        try:
            return self._check(originator_id, topic, state)
        except EventRefused as e:
            named = where if isinstance(where, str) else where()
            raise EventRefused(f"{named} {e}") from None

    def _check(self, originator_id: UUID | str, topic: str, state: bytes) -> tuple[type, Any]:
        cls = self._topics.get(topic)
        if cls is None:
            try:
                cls = resolve_topic(topic)
            except Exception:  # NOTE: resolve_topic raises several kinds for a stranger
                cls = None
            if cls not in self._handled:
                raise EventRefused("is of a kind this cargohold does not know (a newer version?)")
            self._topics[topic] = cls
        try:
            stream = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
            decoded = self._transcoder.decode(state)
            if not isinstance(decoded, dict):
                raise TypeError("the state is not a map")
        except Exception as e:  # NOTE: any failure to decode means the same thing here
            raise EventRefused(f"cannot be decoded: {e}") from None
        if decoded.get("class_version", 1) > getattr(cls, "class_version", 1):
            raise EventRefused("is of a newer schema than this cargohold knows")
        make_id = _STREAM_IDS.get(cls)
        if make_id is not None:
            named, site = decoded.get("name"), decoded.get("site_id")
            if not isinstance(site, UUID) or make_id(site, named) != stream:
                kind = CREATED_KINDS[cls]
                raise EventRefused(f"is not the stream of {kind} {named} at {site}")
        return cls, decoded
