"""What the filesystem and the S3 blob stores share: staged uploads, hashed as they arrive.

Both stores stage content the same way. An upload starts with an incremental sha256
(the digest clients use) in a ``HasherCache``; every append feeds it, so a commit whose
hasher covers the staged size needs no second read; a store that finds no hasher (another
process, a restart) reads the staged content back (``_rehash``). A ``put`` is one staged
upload: started, appended whole, committed under the expected digest (or the sha256 it
hashed), and discarded if anything fails.

A subclass provides, besides the ``BlobStore`` methods not defined here:

- ``_create_upload(upload_id, started_at)``: the storage of a new, empty upload that
  records its start time (seconds since the epoch); raises ``StorageError``;
- ``_rehash(upload_id, algorithm)``: the hex digest of the upload's staged content, read
  back from storage; raises ``UploadUnknown`` or ``StorageError``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from cargohold.adapters.blobs import (
    DEFAULT_CHUNK_SIZE,
    HasherCache,
    keys,
    new_upload_id,
    sha256_hasher,
)
from cargohold.domain.errors import BlobUnknown, SizeInvalid, StorageError, UploadUnknown
from cargohold.domain.ports import BlobStore, ByteSource
from cargohold.domain.values import Digest, DigestAlgorithm


class StagedBlobStore(BlobStore):
    """The shared part of the blob stores (see the module docstring).

    ``chunk_size`` bounds every chunk read or written; ``new_id`` makes upload ids (they
    must pass ``keys.is_upload_id``); ``clock`` dates uploads, for the janitor.
    """

    def __init__(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        new_id: Callable[[], str] = new_upload_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._chunk_size = chunk_size
        self._new_id = new_id
        self._clock = clock
        self._hashers = HasherCache()

    @abstractmethod
    def _create_upload(self, upload_id: str, started_at: float) -> None:
        """Store a new, empty upload dated ``started_at``; raises ``StorageError``."""

    @abstractmethod
    def _rehash(self, upload_id: str, algorithm: DigestAlgorithm) -> str:
        """The hex digest of the upload's staged content, read back from storage."""

    # -- the BlobStore methods both stores implement alike ---------------------------------

    def exists(self, digest: Digest) -> bool:
        try:
            self.stat(digest)
        except BlobUnknown:
            return False
        return True

    def put(
        self,
        stream: ByteSource,
        expected: Digest | None = None,
        expected_size: int | None = None,
    ) -> tuple[Digest, int]:
        upload_id = self.start_upload()
        if expected is not None and expected.algorithm is not DigestAlgorithm.SHA256:
            # Hash once, with the algorithm that is verified.
            self._hashers.store(upload_id, 0, expected.algorithm.hasher(), expected.algorithm)
        try:
            size = self.append(upload_id, stream, 0)
            if expected_size is not None and size != expected_size:
                raise SizeInvalid(f"content is {size} bytes, not {expected_size}")
            if expected is None:
                sha256 = DigestAlgorithm.SHA256
                hex_digest = self._cached_hex(upload_id, size, sha256)
                if hex_digest is None:
                    hex_digest = self._rehash(upload_id, sha256)
                expected = Digest(sha256, hex_digest)
            self.commit(upload_id, expected)
            return expected, size
        except BaseException:
            self._discard(upload_id)
            raise

    def start_upload(self) -> str:
        upload_id = self._new_id()
        if not keys.is_upload_id(upload_id):
            raise ValueError(f"the id factory made an unusable upload id: {upload_id!r}")
        self._create_upload(upload_id, float(self._clock()))
        self._hashers.store(upload_id, 0, sha256_hasher())
        return upload_id

    # -- for the subclasses ----------------------------------------------------------------

    def _cached_hex(self, upload_id: str, size: int, algorithm: DigestAlgorithm) -> str | None:
        """The hex digest of ``size`` staged bytes if this process hashed exactly those."""
        hasher = self._hashers.at(upload_id, size, algorithm)
        return None if hasher is None else str(hasher.hexdigest())

    def _appended(
        self, upload_id: str, cached: tuple[DigestAlgorithm, Any] | None, new_size: int
    ) -> None:
        """After an append that ``cached``'s hasher (from ``HasherCache.entry`` at the
        old size) was fed: keep it for ``new_size``, or forget the upload's hasher."""
        if cached is not None:
            self._hashers.store(upload_id, new_size, cached[1], cached[0])
        else:
            self._hashers.drop(upload_id)

    def _discard(self, upload_id: str) -> None:
        """Best-effort removal of a failed ``put``'s staging (the janitor catches leftovers)."""
        with suppress(UploadUnknown, StorageError):
            self.cancel(upload_id)
