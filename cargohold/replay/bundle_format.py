"""The bundle file of ``cargohold export``/``import``: a stream of msgpack frames.

::

    header   ["cargohold-bundle", {"version": 1, "site_id": str, "after": int,
              "through": int, "created_at": str, "repos": [str, ...]}]
    blob     ["blob", digest str, size int]     then the content, as bin frames of at
             bin, bin, ...                      most CHUNK bytes (none for an empty blob)
    event    ["event", position int, originator_id str, version int, topic str,
              state bin]
    trailer  ["end", {"blobs": int, "blob_bytes": int, "events": int, "sha256": str}]

Order: the header, every blob, every event (in the source log's order), the trailer.
Blobs come before events so that no event saying a blob exists is applied before the
blob is stored. ``state`` is the event's state as the transcoder makes it, before any
compression or encryption (a bundle is site-neutral; see ``bundle.py``). ``after`` and
``through`` are the source log positions covered: events with ``after < position <=
through`` of the streams exported.

The trailer's ``sha256`` is over every byte before the trailer frame, and its counts
over the frames: a reader that reaches a valid trailer has read an intact bundle, and a
truncated or altered file is caught (by ``verify``) before anything is applied.

The writer writes ``FILE.partial`` and renames it to ``FILE`` only after the trailer is
written and synced, so a killed export never leaves a file that looks complete.

Neither reader nor writer holds a blob whole in memory: content moves in chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgpack

MAGIC = "cargohold-bundle"
VERSION = 1
CHUNK = 1024 * 1024
#: The largest frame a reader accepts (an event's state; a blob chunk is CHUNK).
MAX_FRAME = 64 * 1024 * 1024
_READ = 1024 * 1024


class BundleError(Exception):
    """The file is not a bundle this version reads, or it is damaged, or it cannot be
    applied here. The message is one line for the operator."""


@dataclass(frozen=True)
class Header:
    site_id: str
    after: int
    through: int
    created_at: str
    repos: tuple[str, ...]
    version: int = VERSION

    def as_frame(self) -> list[Any]:
        return [
            MAGIC,
            {
                "version": self.version,
                "site_id": self.site_id,
                "after": self.after,
                "through": self.through,
                "created_at": self.created_at,
                "repos": list(self.repos),
            },
        ]


@dataclass(frozen=True)
class BlobStart:
    digest: str
    size: int


@dataclass(frozen=True)
class EventFrame:
    position: int
    originator_id: str
    version: int
    topic: str
    state: bytes


@dataclass(frozen=True)
class Trailer:
    blobs: int
    blob_bytes: int
    events: int
    sha256: str


@dataclass
class Counts:
    blobs: int = 0
    blob_bytes: int = 0
    events: int = 0


# -- writing -------------------------------------------------------------------------


class _HashingFile:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.hash.update(data)
        self.size += len(data)


class BundleWriter:
    """Writes one bundle: ``header``, then ``blob``s, then ``event``s, then ``finish``.

    Use it as a context manager: leaving it without ``finish`` (an error, a kill)
    removes the partial file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._file: BinaryIO | None = None
        self._out: _HashingFile | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self.counts = Counts()
        self._stage = 0  # 0 nothing, 1 header, 2 blobs, 3 events, 4 finished

    def __enter__(self) -> BundleWriter:
        try:
            self._file = open(self.partial, "wb")  # NOTE: closed in __exit__
        except OSError as e:
            raise BundleError(f"cannot write {self.partial}: {e.strerror or e}") from e
        self._out = _HashingFile(self._file)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._stage != 4:
            self.partial.unlink(missing_ok=True)

    def _pack(self, obj: Any) -> None:
        assert self._out is not None, "use BundleWriter as a context manager"
        try:
            self._out.write(self._packer.pack(obj))
        except OSError as e:
            raise BundleError(f"cannot write {self.partial}: {e.strerror or e}") from e

    def header(self, header: Header) -> None:
        assert self._stage == 0
        self._pack(header.as_frame())
        self._stage = 1

    def blob(self, digest: str, size: int, chunks: Iterator[bytes]) -> None:
        """One blob of ``size`` bytes from ``chunks``, checked against ``digest`` as it is
        written (a blob store that returns other bytes than it was given is caught at the
        exporting site, not after the trip)."""
        assert self._stage in (1, 2)
        self._stage = 2
        algorithm, _, expected = digest.partition(":")
        hasher = hashlib.new(algorithm)
        self._pack(["blob", digest, size])
        written = 0
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= CHUNK:
                piece = bytes(buffer[:CHUNK])
                del buffer[:CHUNK]
                hasher.update(piece)
                self._pack(piece)
                written += len(piece)
        if buffer:
            hasher.update(buffer)
            self._pack(bytes(buffer))
            written += len(buffer)
        if written != size or hasher.hexdigest() != expected:
            raise BundleError(
                f"blob {digest} in this site's blob store does not match its digest or size "
                f"({written} bytes read, {size} expected)"
            )
        self.counts.blobs += 1
        self.counts.blob_bytes += size

    def event(self, event: EventFrame) -> None:
        assert self._stage in (1, 2, 3)
        self._stage = 3
        self._pack(
            [
                "event",
                event.position,
                event.originator_id,
                event.version,
                event.topic,
                event.state,
            ]
        )
        self.counts.events += 1

    def finish(self) -> int:
        """Write the trailer, sync, and rename the file into place; return its size."""
        assert self._out is not None and self._file is not None and self._stage >= 1
        counts = self.counts
        self._pack(
            [
                "end",
                {
                    "blobs": counts.blobs,
                    "blob_bytes": counts.blob_bytes,
                    "events": counts.events,
                    "sha256": self._out.hash.hexdigest(),
                },
            ]
        )
        size = self._out.size
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.partial, self.path)
        except OSError as e:
            raise BundleError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._stage = 4
        return size


# -- reading -------------------------------------------------------------------------


Frame = Header | BlobStart | bytes | EventFrame | Trailer


class BundleReader:
    """Reads a bundle's frames in order, checking their shapes, and hashing what it
    reads so that the trailer can be checked (``trailer_ok``).

    ``frames()`` yields ``Header``, then per blob a ``BlobStart`` followed by its ``bytes``
    chunks, then ``EventFrame``s, then the ``Trailer``; ``BundleError`` for anything else,
    including a file that ends before its trailer.
    """

    def __init__(self, f: IO[bytes], name: str, progress: Callable[[int], None] | None = None):
        self._f = f
        self._name = name
        self._progress = progress
        self._unpacker = msgpack.Unpacker(
            raw=False, use_list=True, strict_map_key=True, max_buffer_size=MAX_FRAME + _READ
        )
        self._hash = hashlib.sha256()
        self._pending = bytearray()  # bytes read but not yet hashed
        self._frame_end = 0  # offset of the end of the last frame returned
        self._hashed = 0  # offset up to which bytes are hashed
        self.before_trailer = ""  # the hash of every byte before the trailer, once met

    def _bad(self, what: str) -> BundleError:
        return BundleError(f"{self._name} is not a valid cargohold bundle: {what}")

    def _next_raw(self) -> tuple[bool, Any]:
        # The bytes of the frame returned before are hashed only now, so that when the
        # trailer is read the hash covers exactly the bytes before it.
        done = self._frame_end - self._hashed
        if done:
            self._hash.update(self._pending[:done])
            del self._pending[:done]
            self._hashed = self._frame_end
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                data = self._f.read(_READ)
                if not data:
                    if self._pending:
                        raise self._bad("it ends in the middle of a frame (truncated)") from None
                    return False, None
                try:
                    self._unpacker.feed(data)
                except msgpack.BufferFull:
                    raise self._bad("a frame is larger than any bundle holds") from None
                self._pending += data
                if self._progress is not None:
                    self._progress(len(data))
                continue
            except (ValueError, msgpack.UnpackException) as e:
                raise self._bad(f"undecodable data ({e})") from None
            self._frame_end = self._unpacker.tell()
            return True, obj

    def frames(self) -> Iterator[Frame]:
        ok, first = self._next_raw()
        if not ok:
            raise self._bad("it is empty")
        yield self._header(first)
        blob_left = 0
        stage = 1
        while True:
            ok, obj = self._next_raw()
            if not ok:
                raise self._bad("it ends before its trailer (truncated)")
            if blob_left:
                if not isinstance(obj, bytes) or not 0 < len(obj) <= min(CHUNK, blob_left):
                    raise self._bad("a blob's content does not match its size")
                blob_left -= len(obj)
                yield obj
                continue
            if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
                raise self._bad("a frame of an unknown kind")
            kind = obj[0]
            if kind == "blob" and stage <= 2:
                stage = 2
                start = self._blob(obj)
                blob_left = start.size
                yield start
            elif kind == "event" and stage <= 3:
                stage = 3
                yield self._event(obj)
            elif kind == "end":
                self.before_trailer = self._hash.hexdigest()
                trailer = self._trailer(obj)
                ok, _ = self._next_raw()
                if ok:
                    raise self._bad("there is data after its trailer")
                yield trailer
                return
            else:
                raise self._bad(f"a {kind!r} frame out of place")

    def _header(self, obj: Any) -> Header:
        if not (isinstance(obj, list) and len(obj) == 2 and obj[0] == MAGIC):
            raise BundleError(f"{self._name} is not a cargohold bundle")
        h = obj[1]
        if not isinstance(h, dict) or not isinstance(h.get("version"), int):
            raise self._bad("its header is malformed")
        if h["version"] != VERSION:
            raise BundleError(
                f"{self._name} is a bundle of format version {h['version']}; "
                f"this cargohold reads version {VERSION}"
            )
        try:
            header = Header(
                site_id=_typed(h["site_id"], str),
                after=_typed(h["after"], int),
                through=_typed(h["through"], int),
                created_at=_typed(h["created_at"], str),
                repos=tuple(_typed(r, str) for r in _typed(h["repos"], list)),
            )
        except (KeyError, TypeError) as e:
            raise self._bad(f"its header is malformed ({e})") from None
        return header

    def _blob(self, obj: list[Any]) -> BlobStart:
        if len(obj) != 3 or not isinstance(obj[1], str) or not isinstance(obj[2], int):
            raise self._bad("a blob frame is malformed")
        if obj[2] < 0:
            raise self._bad("a blob has a negative size")
        return BlobStart(obj[1], obj[2])

    def _event(self, obj: list[Any]) -> EventFrame:
        try:
            if len(obj) != 6:
                raise TypeError("six fields expected")
            return EventFrame(
                position=_typed(obj[1], int),
                originator_id=_typed(obj[2], str),
                version=_typed(obj[3], int),
                topic=_typed(obj[4], str),
                state=_typed(obj[5], bytes),
            )
        except TypeError as e:
            raise self._bad(f"an event frame is malformed ({e})") from None

    def _trailer(self, obj: list[Any]) -> Trailer:
        try:
            if len(obj) != 2 or not isinstance(obj[1], dict):
                raise TypeError("a map expected")
            t = obj[1]
            return Trailer(
                blobs=_typed(t["blobs"], int),
                blob_bytes=_typed(t["blob_bytes"], int),
                events=_typed(t["events"], int),
                sha256=_typed(t["sha256"], str),
            )
        except (KeyError, TypeError) as e:
            raise self._bad(f"its trailer is malformed ({e})") from None


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r:.40} is not {kind.__name__}")
    return value


def open_bundle(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")  # NOTE: the caller closes it
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from e
