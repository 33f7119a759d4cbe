"""``BlobStore`` on any S3 service (MinIO, Ceph RGW, AWS) through the ``minio`` SDK.

Layout as drawn in ``keys``, under an optional key prefix. S3 has no rename and no
append, so an upload is a set of objects: ``startedat`` (whose presence defines the
upload) and one part object per ``append``, named by the offset it starts at. The staged
size is read back from a listing, so any process can resume any upload.

Commit verifies the staged parts, then assembles them server-side into the blob key,
the cheapest way the parts allow:

- no part: an empty object;
- one part: a server-side copy (``compose_object`` past the 5 GiB single-copy limit,
  which splits the copy into ranged part copies);
- every part but the last at least 5 MiB (S3's minimum multipart size): ``compose_object``;
- otherwise: the parts are streamed back through this process into a new upload.

A blob key is only ever written whole (single PUT, copy, or completed multipart upload),
so a reader never sees a partial blob.

Every ``minio`` and ``urllib3`` exception is translated in ``_errors``, the one choke
point; no SDK type leaves this module.

NOTE: unlike the filesystem store, appends to one upload are not locked: two concurrent
appends at the same offset both write the same part key and the last one wins. The
registry drives one upload from one client, so we do not pay for a lock service.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import urllib3
import urllib3.exceptions
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from cargohold.adapters.blobs import (
    DEFAULT_CHUNK_SIZE,
    HashingReader,
    MiB,
    SourceReadError,
    check_digest,
    check_range,
    keys,
    new_upload_id,
)
from cargohold.adapters.blobs.base import StagedBlobStore
from cargohold.domain.errors import (
    BlobUnknown,
    DomainError,
    RangeInvalid,
    SizeInvalid,
    StorageError,
    UploadUnknown,
)
from cargohold.domain.ports import ByteSource
from cargohold.domain.values import Digest, DigestAlgorithm

# S3's multipart limits.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB  # also the largest single-request copy
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB


@dataclass(frozen=True)
class _Part:
    offset: int
    size: int
    key: str


class S3BlobStore(StagedBlobStore):
    """Blobs in ``bucket`` under ``prefix``; see the module docstring.

    ``part_size`` is the multipart part size for streams of unknown length, and so the
    memory one upload holds (about twice that, in the SDK); an append of unknown length
    can then be at most ``part_size * 10000`` bytes (80 GiB by default).
    ``parallel_uploads`` > 1 trades memory (one part buffer each) for throughput.
    """

    def __init__(
        self,
        client: Minio,
        bucket: str,
        *,
        prefix: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = 1,
        new_id: Callable[[], str] = new_upload_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(chunk_size=chunk_size, new_id=new_id, clock=clock)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be within [{MIN_PART_SIZE}, {MAX_PART_SIZE}]")
        self._client = client
        self._bucket = bucket
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._part_size = part_size
        self._parallel = max(1, parallel_uploads)

    @classmethod
    def connect(
        cls,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
        **options: Any,
    ) -> S3BlobStore:
        """A store with its own client for ``endpoint`` (``host:port``); no I/O happens.

        Timeouts and retries are bounded, so an unreachable endpoint fails in seconds
        rather than the SDK's default minutes. A malformed endpoint raises ``StorageError``.
        """
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=300),
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
            maxsize=32,
        )
        try:
            client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http,
            )
        except ValueError as e:
            raise StorageError(f"bad S3 endpoint {endpoint!r}: {e}") from e
        return cls(client, bucket, **options)

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self._bucket!r}, prefix={self._prefix!r})"

    # -- committed blobs -------------------------------------------------------------

    def stat(self, digest: Digest) -> int:
        with self._errors("stat a blob", missing=lambda: BlobUnknown(f"unknown blob {digest}")):
            return self._client.stat_object(self._bucket, self._key(keys.blob(digest))).size or 0

    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        # NOTE: validated eagerly, fetched lazily: an iterator that is never started then
        # holds no connection.
        size = self.stat(digest)
        remaining = check_range(size, offset, length)
        missing = partial(BlobUnknown, f"unknown blob {digest}")
        return self._stream(self._key(keys.blob(digest)), offset, remaining, missing)

    def delete(self, digest: Digest) -> bool:
        if not self.exists(digest):
            return False
        with self._errors("delete a blob"):
            self._client.remove_object(self._bucket, self._key(keys.blob(digest)))
        return True

    # -- staged uploads --------------------------------------------------------------

    def _create_upload(self, upload_id: str, started_at: float) -> None:
        started = repr(started_at).encode("ascii")
        with self._errors("start an upload"):
            self._client.put_object(
                self._bucket,
                self._key(keys.upload_started_at(upload_id)),
                io.BytesIO(started),
                len(started),
                content_type="text/plain",
            )

    def append(
        self, upload_id: str, stream: ByteSource, offset: int, length: int | None = None
    ) -> int:
        if length is not None and length < 0:
            raise SizeInvalid(f"negative length {length}")
        size = _total(self._staged(upload_id))
        if offset != size:
            raise RangeInvalid(f"append at offset {offset}, but the upload has {size} bytes")
        cached = self._hashers.entry(upload_id, size)
        reader = HashingReader(stream, [cached[1]] if cached else [], limit=length)
        key = self._key(keys.upload_part(upload_id, offset))
        with self._errors("append to an upload"):
            try:
                self._upload(key, reader, length)
                if length is not None and reader.count != length:
                    raise SizeInvalid(f"stream ended after {reader.count} of {length} bytes")
            except BaseException:
                # NOTE: all or nothing: a part that landed for a failed append must go.
                self._remove_quietly(key)
                raise
            if reader.count == 0:
                self._client.remove_object(self._bucket, key)
        new_size = size + reader.count
        self._appended(upload_id, cached, new_size)
        return new_size

    def truncate_upload(self, upload_id: str, size: int) -> None:
        parts = self._staged(upload_id)
        if size != _total(parts) and size not in {p.offset for p in parts}:
            raise RangeInvalid(f"{size} is not where an append of upload {upload_id} began")
        with self._errors("truncate an upload"):
            for part in parts:
                if part.offset >= size:
                    self._client.remove_object(self._bucket, part.key)
        self._hashers.drop(upload_id)

    def upload_size(self, upload_id: str) -> int:
        return _total(self._staged(upload_id))

    def commit(self, upload_id: str, expected: Digest, expected_size: int | None = None) -> int:
        parts = self._staged(upload_id)
        size = _total(parts)
        if expected_size is not None and size != expected_size:
            raise SizeInvalid(f"upload has {size} bytes, not {expected_size}")
        actual = self._cached_hex(upload_id, size, expected.algorithm)
        if actual is None:
            actual = self._hash(parts, expected.algorithm)
        check_digest(expected, actual)
        if not self.exists(expected):
            self._assemble(parts, self._key(keys.blob(expected)), size)
        self._remove_upload(upload_id, parts)
        self._hashers.drop(upload_id)
        return size

    def cancel(self, upload_id: str) -> None:
        self._remove_upload(upload_id, self._staged(upload_id))
        self._hashers.drop(upload_id)

    def uploads(self) -> Iterator[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        with self._errors("list uploads"):
            listing = list(
                self._client.list_objects(self._bucket, prefix=self._key(f"{keys.UPLOADS}/"))
            )
        for item in listing:
            upload_id = keys.upload_id_of(str(item.object_name)[len(self._prefix) :])
            if upload_id is None:
                continue
            try:
                started = self._get_small(self._key(keys.upload_started_at(upload_id)))
            except UploadUnknown:
                continue  # removed since the listing
            try:
                found.append((upload_id, float(started)))
            except ValueError as e:
                raise StorageError(f"upload {upload_id} has a corrupt start time") from e
        return iter(found)

    # -- operations ------------------------------------------------------------------

    def check(self) -> None:
        probe = self._key(keys.check_probe(new_upload_id()))
        with self._errors(f"use bucket {self._bucket!r}"):
            if not self._client.bucket_exists(self._bucket):
                raise StorageError(f"bucket {self._bucket!r} does not exist")
            self._client.put_object(self._bucket, probe, io.BytesIO(b"cargohold"), 9)
            self._client.remove_object(self._bucket, probe)

    # -- helpers -----------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    @contextmanager
    def _errors(
        self, doing: str, missing: Callable[[], DomainError] | None = None
    ) -> Iterator[None]:
        """The choke point: SDK and transport errors become ``StorageError`` (or ``missing()``)."""
        try:
            yield
        except SourceReadError as e:
            raise e.error from None
        except S3Error as e:
            if missing is not None and e.code == "NoSuchKey":
                raise missing() from None
            raise StorageError(_one_line(f"failed to {doing}: {e.code}: {e.message}")) from e
        except MinioException as e:
            raise StorageError(_one_line(f"failed to {doing}: {e}")) from e
        except urllib3.exceptions.HTTPError as e:
            # MaxRetryError and friends: the endpoint is unreachable or misbehaving.
            reason = getattr(e, "reason", None) or e
            raise StorageError(
                _one_line(f"failed to {doing}: S3 endpoint unreachable: {reason}")
            ) from e

    def _staged(self, upload_id: str) -> list[_Part]:
        """The upload's parts in offset order; ``UploadUnknown`` without ``startedat``."""
        started_at = self._key(keys.upload_started_at(upload_id))
        parts_prefix = self._key(keys.upload_parts(upload_id))
        with self._errors("list an upload"):
            listing = list(
                self._client.list_objects(
                    self._bucket, prefix=self._key(keys.upload(upload_id)) + "/", recursive=True
                )
            )
        found = False
        parts: list[_Part] = []
        for item in listing:
            name = str(item.object_name)
            if name == started_at:
                found = True
            elif name.startswith(parts_prefix):
                try:
                    offset = keys.part_offset(name)
                except ValueError as e:
                    raise StorageError(f"upload {upload_id} is corrupt: {e}") from e
                parts.append(_Part(offset, item.size or 0, name))
        if not found:
            raise UploadUnknown(f"unknown upload {upload_id!r}")
        parts.sort(key=lambda p: p.offset)
        expected = 0
        for part in parts:
            if part.offset != expected:
                raise StorageError(f"upload {upload_id} is corrupt: a part at {part.offset}")
            expected += part.size
        return parts

    def _upload(self, key: str, reader: HashingReader, length: int | None) -> None:
        """Stream ``reader`` to ``key``, at most one part buffer per parallel upload held."""
        part_size = self._part_size
        if length is not None:
            # Enough per part to stay within S3's part count (the SDK wants whole MiBs).
            part_size = max(part_size, math.ceil(length / MAX_PARTS / MiB) * MiB)
        self._client.put_object(
            self._bucket,
            key,
            reader,  # type: ignore[arg-type]  # duck-typed: the SDK only calls read(n)
            length=-1,
            part_size=part_size,
            num_parallel_uploads=self._parallel,
        )

    def _stream(
        self,
        key: str,
        offset: int,
        remaining: int,
        missing: Callable[[], DomainError] | None = None,
    ) -> Iterator[bytes]:
        if remaining == 0:
            return
        with self._errors("read an object", missing=missing):
            response = self._client.get_object(self._bucket, key, offset=offset, length=remaining)
            try:
                for chunk in response.stream(self._chunk_size):
                    if chunk:
                        remaining -= len(chunk)
                        yield chunk
            finally:
                response.close()
                response.release_conn()
        if remaining != 0:
            raise StorageError(f"object {key} ended {remaining} bytes early")

    def _rehash(self, upload_id: str, algorithm: DigestAlgorithm) -> str:
        return self._hash(self._staged(upload_id), algorithm)

    def _hash(self, parts: Sequence[_Part], algorithm: DigestAlgorithm) -> str:
        hasher: Any = algorithm.hasher()
        for part in parts:
            for chunk in self._stream(part.key, 0, part.size):
                hasher.update(chunk)
        return str(hasher.hexdigest())

    def _assemble(self, parts: Sequence[_Part], target: str, size: int) -> None:
        with self._errors("commit an upload"):
            if not parts:
                self._client.put_object(self._bucket, target, io.BytesIO(b""), 0)
            elif len(parts) == 1 and size <= MAX_PART_SIZE:
                source = CopySource(self._bucket, parts[0].key)
                self._client.copy_object(self._bucket, target, source)
            elif len(parts) <= MAX_PARTS and all(p.size >= MIN_PART_SIZE for p in parts[:-1]):
                # NOTE: compose splits any source over 5 GiB into ranged part copies.
                sources = [ComposeSource(self._bucket, p.key) for p in parts]
                self._client.compose_object(self._bucket, target, sources)
            else:
                # PERF: parts too small to compose: the bytes travel through us once more.
                reader = HashingReader(_PartsReader(self, parts))
                self._upload(target, reader, size)
                if reader.count != size:
                    self._remove_quietly(target)
                    raise StorageError(f"staged parts yielded {reader.count} of {size} bytes")

    def _get_small(self, key: str) -> str:
        with self._errors("read an upload", missing=lambda: UploadUnknown(key)):
            response = self._client.get_object(self._bucket, key)
            try:
                return bytes(response.read()).decode("ascii", "replace")
            finally:
                response.close()
                response.release_conn()

    def _remove_upload(self, upload_id: str, parts: Sequence[_Part]) -> None:
        # NOTE: startedat goes last, so a half-removed upload is still listed by
        # ``uploads()`` and a janitor finishes the job.
        with self._errors("remove an upload"):
            if parts:
                doomed = (DeleteObject(p.key) for p in parts)
                for error in self._client.remove_objects(self._bucket, doomed):
                    raise StorageError(f"failed to remove {error.name}: {error.message}")
            self._client.remove_object(self._bucket, self._key(keys.upload_started_at(upload_id)))

    def _remove_quietly(self, key: str) -> None:
        try:
            with self._errors("remove an object"):
                self._client.remove_object(self._bucket, key)
        except StorageError:
            pass  # the original failure matters more; a janitor's cancel cleans up


class _PartsReader:
    """The staged parts, concatenated, as a ``read(n)`` stream (for a re-upload).

    ``read`` returns at most one chunk; ``HashingReader`` around it fills parts.
    """

    def __init__(self, store: S3BlobStore, parts: Sequence[_Part]) -> None:
        self._chunks = (c for p in parts for c in store._stream(p.key, 0, p.size))
        self._pending = b""

    def read(self, size: int, /) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _total(parts: Sequence[_Part]) -> int:
    return sum(p.size for p in parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())
