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
from cargohold.projections.writes import write

Handler = Callable[[Cursor, str, Any, int], None]


class UnknownEvent(Exception):
    """The projection met an event class it cannot apply."""


class ProjectionCorrupt(Exception):
    """An event refers to state the views do not have (e.g. an unknown repository)."""


def event_time(event: Any) -> str:
    """The event's timestamp as ISO 8601 text (what ``*_at`` columns hold)."""
    return str(event.timestamp.isoformat())


def record_tag_history(
    c: Cursor, ns: str, e: Any, pos: int, repo: str, action: str, from_: Any, to: Any
) -> None:
    """One ``tag_history`` row for tag event ``e`` (``action``: move, delete, restore,
    expire; ``from_``/``to``: the digests, or None) with the event's provenance."""
    write(
        c,
        "tag_history",
        f"INSERT INTO {ns}tag_history (position, repository, tag, action, from_digest, "
        "to_digest, actor_kind, actor_name, site_id, hlc_wall, hlc_logical, request_id, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pos,
            repo,
            str(e.tag),
            action,
            None if from_ is None else str(from_),
            None if to is None else str(to),
            e.actor.kind.value,
            e.actor.name,
            str(e.site_id),
            e.hlc.wall_ms,
            e.hlc.logical,
            e.request_id,
            event_time(e),
        ),
    )


def record_origin(c: Cursor, ns: str, kind: str, e: Any, pos: int) -> None:
    """The ``stream_origins`` row of a ``Created`` event: which site made this stream."""
    write(
        c,
        "stream_origins",
        f"INSERT INTO {ns}stream_origins (id, kind, name, site_id, position) "
        "VALUES (?, ?, ?, ?, ?)",
        (str(e.originator_id), kind, str(e.name), str(e.site_id), pos),
    )
