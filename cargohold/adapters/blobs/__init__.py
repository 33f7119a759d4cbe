"""Blob store adapters (``cargohold.domain.ports.BlobStore``) and what they share.

- ``filesystem.FilesystemBlobStore``: a directory tree, commits by atomic rename.
- ``s3.S3BlobStore``: any S3 service through the ``minio`` SDK.
- ``base.StagedBlobStore``: what both share (``put``, staged uploads hashed as they
  arrive); ``blob_file.BlobFile``: the filesystem store's sendfile-capable reads.
- ``keys``: every key and path both of them use.

This package module holds only the streaming helpers both adapters use; it imports
neither adapter, so using the filesystem store never imports the S3 SDK.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from typing import Any

from cargohold.domain.errors import DigestInvalid, RangeInvalid
from cargohold.domain.ports import ByteSource
from cargohold.domain.values import Digest, DigestAlgorithm

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 1 * MiB


def new_upload_id() -> str:
    """The default upload id factory: a random uuid4, as 32 hex digits."""
    return uuid.uuid4().hex


class SourceReadError(Exception):
    """The caller's stream raised ``error``; adapters re-raise ``error`` itself.

    It is a separate type so that an adapter's error choke point does not mistake a
    client's broken stream for a storage failure.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class HashingReader:
    """Reads from ``source``, feeding every byte to ``hashers`` and counting them.

    ``read(n)`` fills up to ``n`` bytes (looping over short reads), so a consumer that
    concatenates (the minio SDK does) makes one copy, not one per short read. With
    ``limit``, at most ``limit`` bytes are taken from ``source`` in total.
    """

    def __init__(self, source: ByteSource, hashers: Iterable[Any] = (), limit: int | None = None):
        self._source = source
        self._hashers = list(hashers)
        self._remaining = limit
        self.count = 0
        self.eof = False

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            raise ValueError("HashingReader.read needs a size: blobs are never read whole")
        if self._remaining is not None:
            size = min(size, self._remaining)
        pieces: list[bytes] = []
        got = 0
        while got < size and not self.eof:
            try:
                piece = self._source.read(size - got)
            except Exception as e:
                raise SourceReadError(e) from e
            if not piece:
                self.eof = True
                break
            pieces.append(piece)
            got += len(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        for h in self._hashers:
            h.update(data)
        self.count += len(data)
        if self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining == 0:
                self.eof = True
        return data


class HasherCache:
    """Incremental hash state per upload, valid at one staged size for one algorithm.

    Purely an optimisation: an entry is trusted only when its size equals the staged
    size it is asked for and its algorithm is the one asked for; a missing entry
    (another process, a restart) means the staged content gets rehashed at commit.
    Uploads start with a ``sha256`` entry (the digest clients use); a ``put`` that knows
    its expected digest stores a hasher of that digest's algorithm instead, so content
    is hashed once, with the algorithm that will be verified.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, DigestAlgorithm, Any]] = {}

    def at(
        self, upload_id: str, size: int, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256
    ) -> Any | None:
        """A copy of the ``algorithm`` hasher for ``upload_id`` if it covers exactly ``size``
        bytes."""
        entry = self.entry(upload_id, size)
        if entry is None or entry[0] is not algorithm:
            return None
        return entry[1]

    def entry(self, upload_id: str, size: int) -> tuple[DigestAlgorithm, Any] | None:
        """``(algorithm, a copy of the hasher)`` for ``upload_id`` if it covers exactly
        ``size`` bytes, whatever its algorithm."""
        with self._lock:
            entry = self._entries.get(upload_id)
        if entry is None or entry[0] != size:
            return None
        return entry[1], entry[2].copy()

    def store(
        self,
        upload_id: str,
        size: int,
        hasher: Any,
        algorithm: DigestAlgorithm = DigestAlgorithm.SHA256,
    ) -> None:
        with self._lock:
            self._entries[upload_id] = (size, algorithm, hasher)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)


def check_range(size: int, offset: int, length: int | None) -> int:
    """The length of ``[offset, offset + length)`` within ``size`` bytes, or ``RangeInvalid``."""
    if offset < 0 or offset > size:
        raise RangeInvalid(f"offset {offset} is outside the blob (size {size})")
    if length is None:
        return size - offset
    if length < 0 or offset + length > size:
        raise RangeInvalid(f"range {offset}+{length} is outside the blob (size {size})")
    return length


def check_digest(expected: Digest, actual_hex: str) -> None:
    if actual_hex != expected.hex:
        actual = Digest(expected.algorithm, actual_hex)
        raise DigestInvalid(f"content digest is {actual}, not {expected}")


def sha256_hasher() -> Any:
    return DigestAlgorithm.SHA256.hasher()
