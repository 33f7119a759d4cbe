"""The merge rules of a repository name that several sites' streams hold, for commands.

At a site with geo peers a name may have one stream per site (each site writes only its
own: ``Repository.create_id(site, name)``). The views fold them all in merge order
(``projections/merge.py``); a command must decide on that same merged state, or it
would refuse an untag of a tag another site made, or let a push ignore a deletion. So
the registry's commands, for a name with streams of other sites, load every stream of
it and fold their events here, in the same order and by the same rules as the views:

- **Order.** Each stream in version order, the streams merged by ``order_key`` (the
  events' hybrid logical clock, then site id, stream id and version).
- **Starting.** A ``Created`` or ``Recreated`` of a name that is live joins it; of a
  deleted one, brings it back empty and private.
- **Deleted names.** Content (``REVIVING``: a blob, a manifest, a tag, a grant) brings
  a deleted name back, as a ``Recreated`` does (its site had not seen the deletion); any
  other event (a removal, a setting) changes nothing.
- **Everything else** is the event's own ``apply``, which is total: it reads the state
  it changes (a tag deleted at one site and moved at another ends the lifetime it
  meets), so it never fails on a state its own stream never had.

The result is state to decide on, not a stream: the caller puts it on this site's
aggregate of the name (``adopt``), whose version is its own stream's, and saves the
command's events there.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from cargohold.domain.repository import Repository
from cargohold.domain.values import HLCTimestamp, RepositoryName

#: Events that bring a deleted name back: they add content. Every other event of a
#: repository (a removal or a change of a setting) is dropped for a deleted name.
REVIVING: frozenset[type] = frozenset(
    {
        Repository.BlobLinked,
        Repository.ManifestPushed,
        Repository.TagMoved,
        Repository.TagRestored,
        Repository.PermissionGranted,
    }
)

#: Events whose handling decides itself what a live, deleted or unknown name makes of it.
STARTING: frozenset[type] = frozenset({Repository.Created, Repository.Recreated})

# NOTE: UUIDs order as their text does (fixed-width hex), so the key keeps the objects.
OrderKey = tuple[int, int, UUID, UUID, int]

#: The attributes of a ``Repository`` that are its state (what ``adopt`` copies).
_STATE = (
    "blobs",
    "manifests",
    "tags",
    "permissions",
    "visibility",
    "deleted",
    "tag_expirations",
    "tag_pasts",
    "state",
)


def order_key(e: Any) -> OrderKey:
    """An event's place in merge order (greater: later)."""
    hlc = e.hlc
    return (hlc.wall_ms, hlc.logical, e.site_id, e.originator_id, e.originator_version)


def merge_order(events: Iterable[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """``(position, event)`` pairs of several streams in merge order: each stream in
    version order, the streams merged by ``order_key``."""
    streams: dict[UUID, list[tuple[int, Any]]] = {}
    for item in events:
        streams.setdefault(item[1].originator_id, []).append(item)
    heads: list[tuple[OrderKey, int, UUID]] = []
    for stream_id, items in streams.items():
        items.sort(key=lambda item: item[1].originator_version)
        heads.append((order_key(items[0][1]), 0, stream_id))
    heapq.heapify(heads)
    merged: list[tuple[int, Any]] = []
    while heads:
        _, index, stream_id = heapq.heappop(heads)
        items = streams[stream_id]
        merged.append(items[index])
        if index + 1 < len(items):
            heapq.heappush(heads, (order_key(items[index + 1][1]), index + 1, stream_id))
    return merged


class MergedState:
    """The fold of a name's streams: ``repository`` holds the state (``None``: no stream
    began yet), ``last_hlc`` the greatest stamp met."""

    def __init__(self, name: RepositoryName) -> None:
        self.name = name
        self.repository: Repository | None = None
        self.last_hlc: HLCTimestamp | None = None

    @property
    def live(self) -> bool:
        return self.repository is not None and not self.repository.deleted

    def apply(self, e: Any) -> None:
        """Fold one event, the next in merge order."""
        if self.last_hlc is None or e.hlc > self.last_hlc:
            self.last_hlc = e.hlc
        repo = self.repository
        cls = type(e)
        if cls in STARTING:
            if repo is None:
                self.repository = _blank(self.name)
            else:
                repo.deleted = False  # joins a live name; brings a deleted one back
            return
        if repo is None:
            # NOTE: every stream starts with its Created, so merge order meets one first.
            raise ValueError(f"event of repository {self.name} before any Created")
        if repo.deleted:
            if cls not in REVIVING:
                return
            repo.deleted = False  # empty and private since the deletion
        e.apply(repo)


def fold(name: RepositoryName, events: Sequence[Any]) -> MergedState:
    """The merged state of ``name`` from every event of its streams (any order)."""
    merged = MergedState(name)
    for _, e in merge_order((0, e) for e in events):
        merged.apply(e)
    return merged


def adopt(repo: Repository, merged: MergedState) -> None:
    """Give ``repo`` (this site's aggregate of the name) the merged state to decide on;
    its id, version and pending events stay its own."""
    source = merged.repository
    if source is None:
        return
    for attribute in _STATE:
        setattr(repo, attribute, getattr(source, attribute))
    last = getattr(repo, "last_hlc", None)
    if merged.last_hlc is not None and (last is None or merged.last_hlc > last):
        # NOTE: as ``ContextEvent.mutate`` keeps it: the unit of work stamps after it.
        repo.last_hlc = merged.last_hlc  # type: ignore[attr-defined]


def _blank(name: RepositoryName) -> Repository:
    """A ``Repository`` that is state only: no id, no version, never saved."""
    repo = object.__new__(Repository)
    Repository.__init__(repo, name)
    return repo
