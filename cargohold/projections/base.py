"""What every projector module shares: the handler signature, its errors, and helpers.

A handler applies one domain event, at notification id ``position``, to the views in
namespace ``ns`` (``""`` live, or a scratch schema prefix such as ``"scratch."``) through
one open cursor. It writes nothing but SQL, so the runner can commit the rows and the
tracking position in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cargohold.adapters.sql import Cursor

Handler = Callable[[Cursor, str, Any, int], None]


class UnknownEvent(Exception):
    """The projection met an event class it cannot apply."""


class ProjectionCorrupt(Exception):
    """An event refers to state the views do not have (e.g. an unknown repository)."""


def event_time(event: Any) -> str:
    """The event's timestamp as ISO 8601 text (what ``*_at`` columns hold)."""
    return str(event.timestamp.isoformat())
