"""What every projector module shares: the handler signature, its errors, and helpers.

A handler applies one domain event, at notification id ``position``, to the views in
namespace ``ns`` (``""`` live, or a scratch schema prefix such as ``"scratch."``) through
one open cursor. It writes nothing but SQL, so the runner can commit the rows and the
tracking position in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cargohold.domain.ports import Cursor
from cargohold.projections.writes import BatchedWrites, write

Handler = Callable[[Cursor, str, Any, int], None]


class UnknownEvent(Exception):
    """The projection met an event class it cannot apply."""


class ProjectionCorrupt(Exception):
    """An event refers to state the views do not have (e.g. an unknown repository)."""


# [(timestamp, its text)]: see event_time. One tuple, replaced whole, so threads
# sharing it never see the text of another timestamp.
_LAST_TIME: list[tuple[Any, str]] = [(None, "")]


def event_time(event: Any) -> str:
    """The event's timestamp as ISO 8601 text (what ``*_at`` columns hold)."""
    # PERF: an event's handlers ask for its time two or three times in a row; datetimes
    # are immutable and the memo keeps the one it names alive, so ``is`` is exact.
    moment = event.timestamp
    last = _LAST_TIME[0]
    if last[0] is moment:
        return last[1]
    text = str(moment.isoformat())
    _LAST_TIME[0] = (moment, text)
    return text


def repository_name(c: Cursor, ns: str, e: Any) -> str:
    """The name of the live repository whose id is ``e``'s originator; raises
    ``ProjectionCorrupt`` when there is none. On a ``BatchedWrites`` cursor the names met
    are remembered for the transaction (``BatchedWrites.repository_names``)."""
    repo_id = e.originator_id
    names = c.repository_names if isinstance(c, BatchedWrites) else {}
    name = names.get(repo_id)
    if name is not None:
        return name
    row = c.execute(f"SELECT name FROM {ns}repositories WHERE id = ?", (str(repo_id),)).fetchone()
    if row is None:
        raise ProjectionCorrupt(f"event for unknown repository {repo_id}")
    name = names[repo_id] = str(row[0])
    return name


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
