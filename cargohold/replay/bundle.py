"""Air-gapped sites: ``cargohold export`` writes a bundle, ``cargohold import`` applies it.

What an export carries (the frame layout is in ``bundle_format``):

- the ``Repository`` streams whose ``namespace/name`` matches a ``--repos`` pattern
  (fnmatch globs; all repositories without one);
- the streams those repositories need to be usable and to keep their permissions: the
  namespace's ``Organization`` or ``Account`` and its ``NamespaceClaim``, and the
  ``Account`` (and claim) of every user named in the repositories' grants and in the
  organisations' members, teams and default permissions;
- every blob the exported events reference (linked blobs, manifests, configs, layers)
  that the blob store has.

Events are site-neutral in the bundle: the state as the transcoder makes it, decrypted
and decompressed at export, compressed and encrypted again by the importing site's own
settings (so the two sites need not share a ``cipher_key``).

``--since P`` exports only the events after log position P, except for a stream that
became needed after P (a new repository, a user granted since, the organisation of a
repository created since): that one comes whole, because the importing site cannot have
it. Chain exports with the same ``--repos`` and the position the last one printed.

Import is verify, check, apply:

1. *verify* reads the whole file once: the trailer's hash and counts, every blob's
   digest and size, every event's topic (known here, handled by the projection) and
   state (decodable). A truncated or altered bundle is refused before anything is
   written.
2. *check* against this site: a bundle this site exported is refused; so is one whose
   streams would leave a gap (an event after versions this site lacks: import the
   earlier bundle first), one that creates a name this site already has in another
   stream (a user ``admin`` made at both sites is two users) or a repository in a
   namespace of this site's own, and one that holds a stream of this site's own or a
   stream whose id is not the one its name and origin site give (forged). Nothing is
   written then. (A bundle is not signed: whoever can forge one can forge another
   site's streams; carry it as you would a backup.)
3. *apply*: blobs first, each verified by the blob store as it is stored (present ones
   are skipped), then the events, keeping their stream ids and versions, in batches of
   one transaction each; events this site has are skipped. A killed import leaves a
   consistent prefix and the next run continues from it. The projection then catches
   up, and the audit chain seals the new events like any others.

Imported streams keep their origin site (it is in their ids), so they never collide with
this site's own. Their names are read-only here (``projections/origins.py``).

This module exports; ``bundle_import`` imports; ``bundle_format`` reads and writes frames.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cargohold.adapters.eventstore import LogReader, RegistryLog, plain_state
from cargohold.domain.accounts import Organization
from cargohold.domain.errors import BlobUnknown
from cargohold.domain.identity import PrincipalKind
from cargohold.domain.ports import BlobStore
from cargohold.domain.repository import Repository
from cargohold.domain.values import Digest
from cargohold.progress import progress_bar
from cargohold.replay.bundle_format import (
    BundleError,
    BundleWriter,
    EventFrame,
    Header,
)
from cargohold.replay.event_checks import CREATED_KINDS

__all__ = [
    "BundleError",
    "ExportResult",
    "ImportRefused",
    "export_bundle",
    "parse_patterns",
]

_SCAN_BATCH = 5000
_READ_BATCH = 1000


class ImportRefused(BundleError):
    """The bundle is intact but cannot be applied here; ``problems`` names each reason."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


def parse_patterns(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--repos`` values, each possibly comma-separated, as a tuple of globs."""
    patterns: list[str] = []
    for value in values or ():
        patterns.extend(p.strip() for p in value.split(",") if p.strip())
    return tuple(patterns)


def stored_state(mapper: Any, state: bytes) -> bytes:
    """The reverse of ``plain_state`` (adapters/eventstore.py) with this site's
    compressor and cipher."""
    if mapper.compressor:
        state = mapper.compressor.compress(state)
    if mapper.cipher:
        state = mapper.cipher.encrypt(state)
    return bytes(state)


# -- export ----------------------------------------------------------------------------


@dataclass
class _Stream:
    kind: str
    name: str
    created: int  # position of its Created event
    selected: bool = False
    events: int = 0  # up to ``through``
    events_after: int = 0  # after ``since``
    users: list[tuple[str, int]] = field(default_factory=list)  # (user named, position)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    after: int
    through: int
    events: int
    blobs: int
    blob_bytes: int
    size: int
    missing_blobs: tuple[str, ...]
    repositories: int = 0  # matched by the patterns (new or not)


def _users_named(event: Any) -> list[str]:
    """The users an event of a repository or organisation names (grants, members)."""
    if isinstance(event, Repository.PermissionGranted | Organization.DefaultPermissionSet):
        if event.principal.kind is PrincipalKind.USER:
            return [event.principal.name]
        return []
    if isinstance(event, Organization.Created):
        return [str(event.owner)]
    if isinstance(event, Organization.MemberAdded | Organization.TeamMemberAdded):
        return [str(event.user)]
    return []


def _blobs_named(event: Any) -> list[Digest]:
    if isinstance(event, Repository.BlobLinked):
        return [event.digest]
    if isinstance(event, Repository.ManifestPushed):
        found = [event.digest]
        if event.config is not None and not event.config.urls:
            found.append(event.config.digest)
        found.extend(d.digest for d in event.layers if not d.urls)
        return found
    return []


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class _Plan:
    since: dict[UUID, int]  # stream -> export its events after this position
    blobs: dict[Digest, None]  # in order of first reference
    events: int
    repositories: int = 0  # selected by the patterns


def _scan(
    log: RegistryLog, since: int, through: int, patterns: tuple[str, ...], quiet: bool
) -> _Plan:
    """One pass over the log up to ``through``: which streams, events and blobs to export."""
    reader = LogReader(log)
    streams: dict[UUID, _Stream] = {}
    blobs: dict[Digest, None] = {}
    position = 0
    with progress_bar(through, "scanning", "ev", quiet) as bar:
        while position < through:
            batch = reader.read(position, _SCAN_BATCH, through)
            if not batch:
                break
            for pos, event in batch:
                kind = CREATED_KINDS.get(type(event))
                if kind is not None:
                    stream = streams[event.originator_id] = _Stream(kind, str(event.name), pos)
                    stream.selected = kind == "repository" and _matches(stream.name, patterns)
                else:
                    found = streams.get(event.originator_id)
                    if found is None:  # pragma: no cover - every stream starts with Created
                        continue
                    stream = found
                stream.events += 1
                if pos > since:
                    stream.events_after += 1
                if stream.kind == "organization" or stream.selected:
                    stream.users.extend((user, pos) for user in _users_named(event))
                    if stream.selected and pos > since:
                        blobs.update(dict.fromkeys(_blobs_named(event)))
            bar.update(batch[-1][0] - position)
            position = batch[-1][0]
    by_name: dict[tuple[str, str], list[UUID]] = {}
    for stream_id, stream in streams.items():
        by_name.setdefault((stream.kind, stream.name), []).append(stream_id)
    # The position from which each stream is needed: from its creation for a selected
    # repository; from the first selected repository for its namespace; from the first
    # event naming them (once its stream is needed) for users.
    needed: dict[UUID, int] = {}

    def need(kinds: tuple[str, ...], name: str, at: int) -> None:
        for kind in kinds:
            for stream_id in by_name.get((kind, name), ()):
                needed[stream_id] = min(needed.get(stream_id, at), at)

    for stream_id, stream in streams.items():
        if stream.selected:
            needed[stream_id] = stream.created
            need(
                ("account", "organization", "namespace"),
                stream.name.split("/", 1)[0],
                stream.created,
            )
    for stream_id, at in list(needed.items()):
        for user, pos in streams[stream_id].users:
            need(("account", "namespace"), user, max(pos, at))
    plan = _Plan(since={}, blobs=blobs, events=0)
    plan.repositories = sum(1 for s in streams.values() if s.selected)
    for stream_id, at in needed.items():
        stream = streams[stream_id]
        # NOTE: a stream needed only since ``since`` went in no earlier bundle: whole.
        whole = at > since
        plan.since[stream_id] = 0 if whole else since
        plan.events += stream.events if whole else stream.events_after
    return plan


def export_bundle(
    log: RegistryLog,
    blobs: BlobStore,
    site_id: UUID,
    path: Path,
    *,
    since: int = 0,
    patterns: tuple[str, ...] = (),
    quiet: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ExportResult:
    """Write the bundle ``path`` of this site's (``site_id``) ``log`` and the ``blobs`` its
    events name (see the module docstring); ``BundleError`` if it cannot."""
    through = LogReader(log).head()
    if not 0 <= since <= through:
        raise BundleError(f"--since {since} is not a position of this log (0 to {through})")
    plan = _scan(log, since, through, patterns, quiet)
    present: list[tuple[Digest, int]] = []
    missing: list[str] = []
    for digest in plan.blobs:
        try:
            present.append((digest, blobs.stat(digest)))
        except BlobUnknown:
            missing.append(str(digest))
    header = Header(
        site_id=str(site_id),
        after=since,
        through=through,
        created_at=now().isoformat(),
        repos=patterns,
    )
    with BundleWriter(path) as writer:
        writer.header(header)
        with progress_bar(sum(size for _, size in present), "blobs", "B", quiet) as bar:
            for digest, size in present:
                writer.blob(str(digest), size, _counted(blobs.read(digest), bar))
        with progress_bar(plan.events, "events", "ev", quiet) as bar:
            for frame in _exported_events(log, plan, through):
                writer.event(frame)
                bar.update(1)
        size = writer.finish()
    counts = writer.counts
    return ExportResult(
        path=path,
        after=since,
        through=through,
        events=counts.events,
        blobs=counts.blobs,
        blob_bytes=counts.blob_bytes,
        size=size,
        missing_blobs=tuple(missing),
        repositories=plan.repositories,
    )


def _counted(chunks: Iterator[bytes], bar: Any) -> Iterator[bytes]:
    for chunk in chunks:
        bar.update(len(chunk))
        yield chunk


def _exported_events(log: RegistryLog, plan: _Plan, through: int) -> Iterator[EventFrame]:
    if not plan.since:
        return
    recorder = log.recorder
    mapper = log.mapper
    position = min(plan.since.values())
    while position < through:
        notifications = recorder.select_notifications(
            start=position, limit=_READ_BATCH, stop=through, inclusive_of_start=False
        )
        if not notifications:
            break
        for n in notifications:
            after = plan.since.get(UUID(str(n.originator_id)))
            if after is not None and n.id > after:
                yield EventFrame(
                    position=n.id,
                    originator_id=str(n.originator_id),
                    version=n.originator_version,
                    topic=n.topic,
                    state=plain_state(mapper, n.state),
                )
        position = notifications[-1].id
