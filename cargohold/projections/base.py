"""What every projector module shares: the handler signature, its errors, and helpers.

A handler applies one domain event, at notification id ``position``, to the views in
namespace ``ns`` (``""`` live, or a scratch schema prefix such as ``"scratch."``) through
one open cursor. It writes nothing but SQL, so the runner can commit the rows and the
tracking position in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

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


def stream_name(c: Cursor, ns: str, e: Any) -> str:
    """The repository name of ``e``'s stream (any site's, live or deleted); raises
    ``ProjectionCorrupt`` for a stream no ``Created`` named."""
    name = getattr(e, "name", None)
    if name is not None:  # Created carries it
        return str(name)
    repo_id = e.originator_id
    names = c.repository_names if isinstance(c, BatchedWrites) else {}
    cached = names.get(repo_id)
    if cached is not None:
        return cached
    ids = c.stream_names if isinstance(c, BatchedWrites) else {}
    cached = ids.get(repo_id)
    if cached is not None:
        return cached
    key = str(repo_id)
    # PERF: one query per stream and batch answers the geo fold's three questions: the
    # name, the greatest event folded for it (``name_orders``), and whether it is live.
    row = c.execute(
        f"SELECT o.name, n.hlc_wall, n.hlc_logical, n.site_id, n.stream, n.version, "
        f"(SELECT 1 FROM {ns}repositories r WHERE r.name = o.name) FROM {ns}stream_origins o "
        f"LEFT JOIN {ns}name_orders n ON n.kind = 'repository' AND n.name = o.name "
        "WHERE o.id = ? AND o.kind = 'repository'",
        (key,),
    ).fetchone()
    if row is not None and isinstance(c, BatchedWrites):
        name = str(row[0])
        if name not in c.orders:
            c.orders[name] = None if row[1] is None else order_of_row(row[1:6])
        if row[6] is not None:
            names[repo_id] = name
    # NOTE: views made before stream_origins existed lack the rows of older streams;
    # theirs is the one stream of their name.
    for table in ("repositories", "deleted_repositories"):
        if row is not None:
            break
        row = c.execute(f"SELECT name FROM {ns}{table} WHERE id = ?", (key,)).fetchone()
    if row is None:
        raise ProjectionCorrupt(f"event for unknown repository {repo_id}")
    name = ids[repo_id] = str(row[0])
    return name


def order_of_row(row: Any) -> tuple[int, int, UUID, UUID, int]:
    """The merge-order key (``merge.order_key``) of a ``name_orders`` row's five columns
    (``hlc_wall`` to ``version``)."""
    return (int(row[0]), int(row[1]), UUID(row[2]), UUID(row[3]), int(row[4]))


def repository_name(c: Cursor, ns: str, e: Any) -> str:
    """The name of the live repository that ``e``'s stream is of; raises
    ``ProjectionCorrupt`` when there is none. On a ``BatchedWrites`` cursor the live
    names met are remembered for the transaction (``BatchedWrites.repository_names``)."""
    repo_id = e.originator_id
    names = c.repository_names if isinstance(c, BatchedWrites) else {}
    name = names.get(repo_id)
    if name is not None:
        return name
    name = stream_name(c, ns, e)
    if c.execute(f"SELECT 1 FROM {ns}repositories WHERE name = ?", (name,)).fetchone() is None:
        raise ProjectionCorrupt(f"event for repository {name} ({repo_id}), which is deleted")
    names[repo_id] = name
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
