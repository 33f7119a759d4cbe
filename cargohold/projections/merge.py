"""The geo fold: every site's streams of a repository name fold into one, in merge order.

Each site writes only its own stream of a name (``Repository.create_id(site, name)``),
and its views fold the events of *every* site's streams of the name that it holds
(``docs/geo-replication.md``). Sites receive those events in different orders, so the
views must not depend on the order of arrival: the rows of a name are the fold of its
events in **merge order**, and the merge rules of the docs' table are what that fold
means.

Merge order (``domain/repository_merge.py``, which the commands fold by too): the streams
of a name, each in version order, merged by the events'
``(hlc.wall_ms, hlc.logical, site_id, stream id, version)`` (a k-way merge, so one stream
whose stamps were written by clocks out of step still folds in version order). An event
greater than every one folded for its name so far (``name_orders``) goes last: it is
applied as it comes, which is every event of a site that has no peers. One that is not
arrived late, from a peer: its name is marked, and at the end of the batch the name's
rows are wiped and folded again from the log, in merge order, through the batch.

What the fold has to make of interleavings that no single stream holds:

- A ``Created`` of a name that is live joins it: the name is the repository, whichever
  site's stream made it. Content (a blob, a manifest, a tag, a grant) for a deleted name
  brings it back, private and empty as a ``Recreated`` does: the other site had not seen
  the deletion when it wrote. A removal (an untag, a revocation, a visibility or state
  change, a deletion) for a deleted name changes nothing.
- The handlers are total: a tag deleted at one site and expired at another, a manifest
  pushed at both, a tag expiration for a tag moved elsewhere meanwhile, all fold without
  stopping the projection.

Not folded again: the per-event records (the audit log and its counts, ``tag_history``,
``stream_origins``), written once as each event comes; they depend on the event alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from cargohold.domain.identity import Visibility
from cargohold.domain.repository import Repository
from cargohold.domain.repository_merge import (
    REVIVING,
    STARTING,
    OrderKey,
    merge_order,
    order_key,
)
from cargohold.projections.base import (
    ProjectionCorrupt,
    event_time,
    order_of_row,
    record_origin,
    record_tag_history,
    stream_name,
)
from cargohold.projections.writes import BatchedWrites

#: The tables a repository name's rows are in, keyed by its name in ``repository``:
#: what a fold again wipes (besides ``repositories`` and ``deleted_repositories``).
NAME_TABLES = (
    "blob_links",
    "manifests",
    "tags",
    "referrers",
    "repository_permissions",
    "repository_states",
    "tag_lifetimes",
    "manifest_sizes",
    "cached_tags",
)

# (action, (from, to)) of the ``tag_history`` row each tag event makes.
_TAG_HISTORY: dict[type, tuple[str, Callable[[Any], tuple[Any, Any]]]] = {
    Repository.TagMoved: ("move", lambda e: (e.from_digest, e.to_digest)),
    Repository.TagDeleted: ("delete", lambda e: (e.digest, None)),
    Repository.TagRestored: ("restore", lambda e: (e.from_digest, e.to_digest)),
    Repository.TagExpired: ("expire", lambda e: (e.digest, None)),
}

StateHandler = Callable[[BatchedWrites, str, Any, int], None]


@runtime_checkable
class StreamHistory(Protocol):
    """The log, as a fold again reads it."""

    def read_streams(self, ids: Sequence[UUID], through: int) -> Sequence[tuple[int, Any]]:
        """The ``(position, event)`` pairs of the streams ``ids`` stored at positions up to
        ``through``."""


class GeoFold:
    """Applies ``Repository`` events through the registry's ``handlers`` in merge order."""

    def __init__(self, handlers: Mapping[type, StateHandler]) -> None:
        self._handlers = handlers

    def apply(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        name = stream_name(c, ns, e)
        self._records(c, ns, e, pos, name)
        key = order_key(e)
        last = self._order(c, ns, name)
        if last is None or key > last:
            self._set_order(c, ns, name, key)
        if name in c.refolds:
            return  # folded again at the end of the batch, this event included
        if last is not None and key < last:
            c.refolds.add(name)
            return
        self.state(c, ns, e, pos, name)

    def finish(
        self, c: BatchedWrites, ns: str, through: int, history: StreamHistory | None
    ) -> None:
        """Fold again the names whose events arrived late in this batch (through position
        ``through``, the batch's last)."""
        self._write_orders(c, ns)
        if not c.refolds:
            return
        if history is None:
            raise ProjectionCorrupt(
                f"events of {sorted(c.refolds)} arrived out of merge order and this "
                "projection has no log to fold them again from"
            )
        for name in sorted(c.refolds):
            self._refold(c, ns, name, through, history)
        c.refolds.clear()

    # -- state -------------------------------------------------------------------------

    def state(self, c: BatchedWrites, ns: str, e: Any, pos: int, name: str) -> None:
        """Apply ``e``'s effect on the rows of ``name`` (no per-event records)."""
        cls = type(e)
        if cls not in STARTING and not self._live(c, ns, e, name):
            if cls not in REVIVING:
                return
            bring_back(c, ns, e, name, pos)
        self._handlers[cls](c, ns, e, pos)

    @staticmethod
    def _live(c: BatchedWrites, ns: str, e: Any, name: str) -> bool:
        if e.originator_id in c.repository_names:
            return True
        if c.execute(f"SELECT 1 FROM {ns}repositories WHERE name = ?", (name,)).fetchone():
            c.repository_names[e.originator_id] = name
            return True
        return False

    # -- records -----------------------------------------------------------------------

    @staticmethod
    def _records(c: BatchedWrites, ns: str, e: Any, pos: int, name: str) -> None:
        if type(e) is Repository.Created:
            record_origin(c, ns, "repository", e, pos)
            c.stream_names[e.originator_id] = name
            return
        history = _TAG_HISTORY.get(type(e))
        if history is not None:
            action, digests = history
            record_tag_history(c, ns, e, pos, name, action, *digests(e))

    # -- order -------------------------------------------------------------------------

    @staticmethod
    def _order(c: BatchedWrites, ns: str, name: str) -> OrderKey | None:
        if name in c.orders:
            return c.orders[name]
        row = c.execute(
            f"SELECT hlc_wall, hlc_logical, site_id, stream, version FROM {ns}name_orders "
            "WHERE kind = 'repository' AND name = ?",
            (name,),
        ).fetchone()
        key = None if row is None else order_of_row(row)
        c.orders[name] = key
        return key

    @staticmethod
    def _set_order(c: BatchedWrites, ns: str, name: str, key: OrderKey) -> None:
        # PERF: written once per name and batch (``_write_orders``), not per event.
        c.orders[name] = key
        c.orders_moved.add(name)

    @staticmethod
    def _write_orders(c: BatchedWrites, ns: str) -> None:
        rows = []
        for name in sorted(c.orders_moved):
            key = c.orders[name]
            assert key is not None
            rows.append((name, key[0], key[1], str(key[2]), str(key[3]), key[4]))
        c.orders_moved.clear()
        for row in rows:
            c.defer(
                "name_orders",
                f"INSERT INTO {ns}name_orders (kind, name, hlc_wall, hlc_logical, site_id, "
                "stream, version) VALUES ('repository', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, name) DO UPDATE SET hlc_wall = excluded.hlc_wall, "
                "hlc_logical = excluded.hlc_logical, site_id = excluded.site_id, "
                "stream = excluded.stream, version = excluded.version",
                row,
            )

    # -- folding again -----------------------------------------------------------------

    def _refold(
        self, c: BatchedWrites, ns: str, name: str, through: int, history: StreamHistory
    ) -> None:
        rows = c.execute(
            f"SELECT id FROM {ns}stream_origins WHERE kind = 'repository' AND name = ? "
            f"UNION SELECT id FROM {ns}repositories WHERE name = ? "
            f"UNION SELECT id FROM {ns}deleted_repositories WHERE name = ?",
            (name, name, name),
        ).fetchall()
        events = history.read_streams(sorted(UUID(str(r[0])) for r in rows), through)
        for table in NAME_TABLES:
            c.execute(f"DELETE FROM {ns}{table} WHERE repository = ?", (name,))
        for table in ("repositories", "deleted_repositories"):
            c.execute(f"DELETE FROM {ns}{table} WHERE name = ?", (name,))
        forget(c, name)
        for pos, e in merge_order(events):
            self.state(c, ns, e, pos, name)


def forget(c: BatchedWrites, name: str) -> None:
    """Drop what the transaction remembers of the rows of ``name`` (gone)."""
    for stream_id in [k for k, v in c.repository_names.items() if v == name]:
        del c.repository_names[stream_id]
    c.manifest_sizes.pop(name, None)


def name_state(c: BatchedWrites, ns: str, name: str) -> str | None:
    """``"live"``, ``"deleted"``, or None for a name the views have no row of."""
    row = c.execute(
        f"SELECT 'live' FROM {ns}repositories WHERE name = ? "
        f"UNION ALL SELECT 'deleted' FROM {ns}deleted_repositories WHERE name = ?",
        (name, name),
    ).fetchone()
    return None if row is None else str(row[0])


def bring_back(c: BatchedWrites, ns: str, e: Any, name: str, pos: int) -> None:
    """Make the deleted name live again from ``e``'s stream, private and empty (a
    ``Recreated``, or content another site wrote before it saw the deletion)."""
    if name_state(c, ns, name) != "deleted":
        raise ProjectionCorrupt(f"event for repository {name}, which the views do not hold")
    revive(c, ns, e, name, pos)


def revive(c: BatchedWrites, ns: str, e: Any, name: str, pos: int) -> None:
    """``bring_back`` for a name the caller knows is deleted."""
    c.defer("deleted_repositories", f"DELETE FROM {ns}deleted_repositories WHERE name = ?", (name,))
    insert_live(c, ns, e, name, pos)


def insert_live(c: BatchedWrites, ns: str, e: Any, name: str, pos: int) -> None:
    """The ``repositories`` row of ``name``, live from ``e``'s stream. Every repository
    starts private (``Created`` and ``Recreated`` carry no visibility)."""
    c.defer(
        "repositories",
        f"INSERT INTO {ns}repositories (id, name, visibility, created_at, position) "
        "VALUES (?, ?, ?, ?, ?)",
        (str(e.originator_id), name, Visibility.PRIVATE.value, event_time(e), pos),
    )
    c.repository_names[e.originator_id] = name
