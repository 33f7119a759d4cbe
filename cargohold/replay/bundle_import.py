"""``cargohold import``: verify a bundle, check it against this site, apply it.

See ``bundle.py`` for what a bundle holds and the three steps (verify, check, apply).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from cargohold.adapters.eventstore import RegistryLog
from cargohold.domain.errors import DomainError
from cargohold.domain.ports import BlobStore, Database
from cargohold.domain.values import Digest
from cargohold.progress import progress_bar
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay.bundle import ImportRefused, stored_state
from cargohold.replay.bundle_format import (
    BlobStart,
    BundleError,
    BundleReader,
    EventFrame,
    Header,
    Trailer,
    open_bundle,
)
from cargohold.replay.event_checks import CREATED_KINDS, EventChecks, EventRefused


@dataclass(frozen=True)
class _Here:
    """What an import works with at this site (``import_bundle``'s arguments)."""

    log: RegistryLog
    blobs: BlobStore
    views_db: Database
    runner: ProjectionRunner
    site_id: UUID


@dataclass
class _Incoming:
    """What the bundle holds of one stream."""

    first: int  # first version in the bundle
    last: int
    created: tuple[str, str] | None = None  # (kind, name) when it holds the Created event
    site: str | None = None  # the origin site its Created event names


@dataclass
class _Survey:
    header: Header
    trailer: Trailer
    streams: dict[str, _Incoming]


@dataclass(frozen=True)
class ImportResult:
    site_id: str
    after: int
    through: int
    events: int  # written here
    events_present: int  # in the bundle and already here
    blobs: int  # stored here
    blobs_present: int
    blob_bytes: int  # stored here
    position: int  # the views' position afterwards


def _verify(here: _Here, path: Path, quiet: bool) -> _Survey:
    """Read the whole bundle, check everything that can be checked without this site's
    data, and return what it holds. Raises ``BundleError``."""
    transcoder = here.log.mapper.transcoder
    handled = here.runner.projector.event_classes
    streams: dict[str, _Incoming] = {}
    header: Header | None = None
    trailer: Trailer | None = None
    blobs = events = blob_bytes = 0
    hasher: Any = None
    blob: BlobStart | None = None
    left = 0
    checks = EventChecks(handled, transcoder)
    with open_bundle(path) as f, progress_bar(path.stat().st_size, "verifying", "B", quiet) as bar:
        reader = BundleReader(f, str(path), progress=bar.update)
        for frame in reader.frames():
            if isinstance(frame, bytes):
                hasher.update(frame)
                left -= len(frame)
                if left == 0:
                    _check_blob(blob, hasher)
            elif isinstance(frame, BlobStart):
                blob, left = frame, frame.size
                hasher = _hasher(frame.digest, str(path))
                blobs += 1
                blob_bytes += frame.size
                if left == 0:
                    _check_blob(blob, hasher)
            elif isinstance(frame, EventFrame):
                events += 1
                _check_event(frame, streams, checks, str(path))
            elif isinstance(frame, Header):
                header = frame
            else:
                trailer = frame
    assert header is not None and trailer is not None
    if trailer.sha256 != reader.before_trailer:
        raise BundleError(f"{path} is damaged: its content does not match its checksum")
    if (trailer.blobs, trailer.blob_bytes, trailer.events) != (blobs, blob_bytes, events):
        raise BundleError(f"{path} is damaged: its counts do not match its content")
    return _Survey(header, trailer, streams)


def _hasher(digest: str, name: str) -> Any:
    try:
        parsed = Digest.parse(digest)
    except DomainError:
        raise BundleError(f"{name} holds a blob with a malformed digest {digest[:80]!r}") from None
    return hashlib.new(parsed.algorithm.value)


def _check_blob(blob: BlobStart | None, hasher: Any) -> None:
    assert blob is not None
    if f"{blob.digest.split(':', 1)[0]}:{hasher.hexdigest()}" != blob.digest:
        raise BundleError(f"blob {blob.digest} in the bundle does not match its digest")


def _check_event(
    frame: EventFrame, streams: dict[str, _Incoming], checks: EventChecks, name: str
) -> None:
    where = f"{name}: event {frame.originator_id} v{frame.version} ({frame.topic[:100]})"
    try:
        cls, state = checks.check(frame.originator_id, frame.topic, frame.state, where)
    except EventRefused as e:
        raise BundleError(str(e)) from None
    incoming = streams.get(frame.originator_id)
    if incoming is None:
        incoming = streams[frame.originator_id] = _Incoming(frame.version, frame.version - 1)
    if frame.version != incoming.last + 1 or frame.version < 1:
        raise BundleError(f"{where} does not follow version {incoming.last}")
    incoming.last = frame.version
    kind = CREATED_KINDS.get(cls)
    if kind is not None:
        incoming.created = (kind, str(state.get("name")))
        incoming.site = str(state.get("site_id"))


def _check_here(here: _Here, survey: _Survey) -> dict[str, int]:
    """The version this site has of each stream in the bundle. Raises ``ImportRefused``
    when the bundle cannot be applied here (see the module docstring)."""
    if survey.header.site_id == str(here.site_id):
        raise ImportRefused(
            f"this bundle was exported by this site ({here.site_id}); import it at another site"
        )
    recorder = here.log.recorder
    this_site = str(here.site_id)
    have: dict[str, int] = {}
    problems: list[str] = []
    for stream_id, incoming in survey.streams.items():
        stored = recorder.select_events(UUID(stream_id), desc=True, limit=1)
        version = stored[0].originator_version if stored else 0
        have[stream_id] = version
        what = "a stream" if incoming.created is None else " ".join(incoming.created)
        # NOTE: a bundle brings other sites' streams only: never one this site writes.
        if incoming.site == this_site or (
            version and _origin(here, stream_id) in (this_site, None)
        ):
            problems.append(f"{what} ({stream_id}) is this site's own: a bundle cannot change it")
        elif incoming.first > version + 1:
            problems.append(
                f"{what} ({stream_id}) continues from version {incoming.first}, but this "
                f"site has it up to version {version}: import the earlier bundle first"
            )
    _refuse(problems + _conflicts(here, survey, have))
    return have


def _origin(here: _Here, stream_id: str) -> str | None:
    """The origin site of a stream stored here (None: in no view, so made here before
    ``stream_origins`` existed)."""
    with here.views_db.transaction(write=False) as c:
        row = c.execute("SELECT site_id FROM stream_origins WHERE id = ?", (stream_id,)).fetchone()
    return None if row is None else str(row[0])


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ImportRefused(
            f"refused: {len(problems)} conflict(s) with this site; nothing was imported",
            problems,
        )


_WHAT = {
    "repository": "repository",
    "account": "user",
    "organization": "organization",
    "namespace": "namespace",
}


def _conflicts(here: _Here, survey: _Survey, have: dict[str, int]) -> list[str]:
    """Every name the bundle would create here that this site has in another stream."""
    new = {
        stream_id: incoming.created
        for stream_id, incoming in survey.streams.items()
        if incoming.created is not None and have[stream_id] == 0
    }
    namespaces = {name for kind, name in new.values() if kind == "namespace"}
    problems: list[str] = []
    with here.views_db.transaction(write=False) as c:
        for stream_id, (kind, name) in new.items():
            if _taken(c, kind, name, stream_id):
                problems.append(
                    f"{_WHAT[kind]} {name} already exists at this site in another stream "
                    "(created here, or imported from a third site): the bundle's is another"
                )
            namespace = name.split("/", 1)[0]
            if kind == "repository" and namespace not in namespaces:
                trouble = _namespace_trouble(c, namespace, str(here.site_id))
                if trouble:
                    problems.append(f"repository {name} needs namespace {namespace}, {trouble}")
    return problems


def _taken(c: Any, kind: str, name: str, stream_id: str) -> bool:
    """Whether ``name`` (of ``kind``) is used here by another stream than ``stream_id``."""
    if kind == "namespace":  # a claim's stream is new here: any claim of it is another
        return c.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone() is not None
    if kind == "repository":
        sql = (
            "SELECT id FROM repositories WHERE name = ? "
            "UNION SELECT id FROM deleted_repositories WHERE name = ?"
        )
        params: tuple[str, ...] = (name, name)
    else:
        table = "accounts" if kind == "account" else "organizations"
        sql, params = f"SELECT id FROM {table} WHERE name = ?", (name,)
    return any(str(r[0]) != stream_id for r in c.execute(sql, params).fetchall())


def _namespace_trouble(c: Any, name: str, site_id: str) -> str | None:
    """Why a new imported repository cannot go into namespace ``name`` here, or None.

    NOTE: it may go into a namespace imported too, or into none (with access control
    off, a push creates repositories in namespaces nobody owns, and a bundle ``--since``
    holds a namespace only when it changed), but never into one of this site's own.
    """
    row = c.execute(
        "SELECT 1 FROM namespaces WHERE name = ? AND name NOT IN (SELECT name FROM "
        "stream_origins WHERE kind = 'namespace' AND site_id <> ?)",
        (name, site_id),
    ).fetchone()
    return None if row is None else "which is this site's own"


class _ChunkSource:
    """A ``ByteSource`` over a blob's chunk frames, for ``BlobStore.put``."""

    def __init__(self, frames: Iterator[Any], size: int) -> None:
        self._frames = frames
        self._left = size
        self._buffer = b""

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer and self._left:
            chunk = next(self._frames)
            assert isinstance(chunk, bytes)
            self._buffer = chunk
            self._left -= len(chunk)
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def import_bundle(
    log: RegistryLog,
    blob_store: BlobStore,
    views_db: Database,
    runner: ProjectionRunner,
    site_id: UUID,
    path: Path,
    *,
    quiet: bool = False,
    batch_size: int = 500,
    after_batch: Callable[[int], None] | None = None,
) -> ImportResult:
    """Verify, check and apply the bundle ``path`` (see the module docstring).

    Raises ``BundleError`` for a file that is not an intact bundle, ``ImportRefused`` for
    one that cannot be applied here; in both cases nothing was written. ``after_batch``
    is called with the number of events written after each committed batch.

    The events go into ``log`` (this site's, ``site_id``), the blobs into ``blob_store``;
    ``runner``, the live projection over ``views_db``, follows batch by batch.
    """
    here = _Here(log, blob_store, views_db, runner, site_id)
    survey = _verify(here, path, quiet)
    have = _check_here(here, survey)
    conflicts_checked = False
    recorder = here.log.recorder
    transcoder = here.log.mapper.transcoder
    handled = here.runner.projector.event_classes
    seen: dict[str, _Incoming] = {}
    checks = EventChecks(handled, transcoder)
    mapper = here.log.mapper
    blobs = blobs_present = blob_bytes = events = present = 0
    batch: list[StoredEvent] = []

    def flush() -> None:
        nonlocal events
        if not batch:
            return
        try:
            recorder.insert_events(batch)
        except IntegrityError:
            raise BundleError(
                "another process wrote the same events meanwhile (a second import?); "
                "run the import again"
            ) from None
        events += len(batch)
        bar.update(len(batch))
        batch.clear()
        # NOTE: the views follow batch by batch, so that imported names are read-only
        # here (and visible) as soon as they are in the log.
        here.runner.catch_up()
        if after_batch is not None:
            after_batch(events)

    total_events = sum(i.last - max(i.first - 1, have[s]) for s, i in survey.streams.items())
    with (
        open_bundle(path) as f,
        progress_bar(survey.trailer.blob_bytes, "blobs", "B", quiet) as blob_bar,
        progress_bar(max(0, total_events), "events", "ev", quiet) as bar,
    ):
        reader = BundleReader(f, str(path))
        frames = reader.frames()
        for frame in frames:
            if isinstance(frame, BlobStart):
                source = _ChunkSource(frames, frame.size)
                digest = Digest.parse(frame.digest)
                if here.blobs.exists(digest):
                    source.drain()
                    blobs_present += 1
                else:
                    try:
                        here.blobs.put(source, expected=digest, expected_size=frame.size)
                    except DomainError as e:
                        raise BundleError(f"blob {frame.digest} not stored: {e.message}") from e
                    blobs += 1
                    blob_bytes += frame.size
                blob_bar.update(frame.size)
            elif isinstance(frame, EventFrame):
                if not conflicts_checked:
                    # NOTE: again, after the blobs (which may have taken long): a name
                    # created here meanwhile would otherwise meet the imported one.
                    _refuse(_conflicts(here, survey, have))
                    conflicts_checked = True
                # The file was verified; it is read again, so check again what is applied.
                _check_event(frame, seen, checks, str(path))
                version = have.get(frame.originator_id)
                if version is None:
                    raise BundleError(f"{path} changed while it was being imported")
                if frame.version <= version:
                    present += 1
                    continue
                if frame.version != version + 1:
                    raise BundleError(f"{path} changed while it was being imported")
                have[frame.originator_id] = frame.version
                batch.append(
                    StoredEvent(
                        originator_id=UUID(frame.originator_id),
                        originator_version=frame.version,
                        topic=frame.topic,
                        state=stored_state(mapper, frame.state),
                    )
                )
                if len(batch) >= batch_size:
                    flush()
            elif isinstance(frame, Trailer) and frame.sha256 != reader.before_trailer:
                # NOTE: the file changed since it was verified; what is written is verified
                # content all the same (blobs by digest, events decoded), so stop here.
                raise BundleError(f"{path} changed while it was being imported")
        flush()
    position = here.runner.catch_up()
    header = survey.header
    return ImportResult(
        site_id=header.site_id,
        after=header.after,
        through=header.through,
        events=events,
        events_present=present,
        blobs=blobs,
        blobs_present=blobs_present,
        blob_bytes=blob_bytes,
        position=position,
    )
