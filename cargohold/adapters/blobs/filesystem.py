"""``BlobStore`` on a local directory tree (the embedded default).

Layout as drawn in ``keys``. An upload is a directory holding ``data`` (the staged
content, appended in place) and ``startedat``; committing fsyncs ``data`` and renames it
to its blob path, then fsyncs that directory, so a committed blob is durable before the
caller records an event saying it exists, and a reader never sees a partial blob.

Appends and commits of one upload take an exclusive ``flock`` on its ``data`` file, so
they serialise across threads and processes sharing the directory.

Every ``OSError`` is translated in ``_errors``, the one choke point.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import IO, Any

from cargohold.adapters.blobs import (
    DEFAULT_CHUNK_SIZE,
    HasherCache,
    HashingReader,
    SourceReadError,
    check_digest,
    check_range,
    keys,
    new_upload_id,
    sha256_hasher,
)
from cargohold.domain.errors import (
    BlobUnknown,
    DomainError,
    RangeInvalid,
    SizeInvalid,
    StorageError,
    UploadUnknown,
)
from cargohold.domain.ports import BlobStore, ByteSource
from cargohold.domain.values import Digest, DigestAlgorithm


class FilesystemBlobStore(BlobStore):
    """Blobs under ``root``; see the module docstring. Nothing touches disk until used."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        new_id: Callable[[], str] = new_upload_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._root = os.fspath(root)
        self._chunk_size = chunk_size
        self._new_id = new_id
        self._clock = clock
        self._hashers = HasherCache()

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({self._root!r})"

    # -- committed blobs -------------------------------------------------------------

    def stat(self, digest: Digest) -> int:
        with self._errors("stat a blob", missing=lambda: BlobUnknown(f"unknown blob {digest}")):
            return os.stat(self._path(keys.blob(digest))).st_size

    def exists(self, digest: Digest) -> bool:
        try:
            self.stat(digest)
        except BlobUnknown:
            return False
        return True

    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        # NOTE: validated eagerly, opened lazily: an iterator that is never started then
        # holds no file descriptor.
        size = self.stat(digest)
        return self._chunks(digest, offset, check_range(size, offset, length))

    def _chunks(self, digest: Digest, offset: int, remaining: int) -> Iterator[bytes]:
        if remaining == 0:
            return
        missing = partial(BlobUnknown, f"unknown blob {digest}")
        path = self._path(keys.blob(digest))
        with self._errors("read a blob", missing=missing), open(path, "rb", buffering=0) as f:
            f.seek(offset)
            while remaining > 0:
                chunk = f.read(min(self._chunk_size, remaining))
                if not chunk:
                    raise StorageError(f"blob {digest} is shorter than its recorded size")
                remaining -= len(chunk)
                yield chunk

    def delete(self, digest: Digest) -> bool:
        with self._errors("delete a blob"):
            try:
                os.unlink(self._path(keys.blob(digest)))
            except FileNotFoundError:
                return False
        return True

    def put(
        self,
        stream: ByteSource,
        expected: Digest | None = None,
        expected_size: int | None = None,
    ) -> tuple[Digest, int]:
        upload_id = self.start_upload()
        try:
            size = self.append(upload_id, stream, 0)
            if expected_size is not None and size != expected_size:
                raise SizeInvalid(f"content is {size} bytes, not {expected_size}")
            digest = expected or Digest(DigestAlgorithm.SHA256, self._sha256(upload_id, size))
            self.commit(upload_id, digest)
            return digest, size
        except BaseException:
            self._discard(upload_id)
            raise

    # -- staged uploads --------------------------------------------------------------

    def start_upload(self) -> str:
        upload_id = self._new_id()
        if not keys.is_upload_id(upload_id):
            raise ValueError(f"the id factory made an unusable upload id: {upload_id!r}")
        with self._errors("start an upload"):
            os.makedirs(self._path(keys.UPLOADS), exist_ok=True)
            os.mkdir(self._path(keys.upload(upload_id)))
            with open(self._path(keys.upload_data(upload_id)), "xb"):
                pass
            with open(self._path(keys.upload_started_at(upload_id)), "x", encoding="ascii") as f:
                f.write(repr(float(self._clock())))
        self._hashers.store(upload_id, 0, sha256_hasher())
        return upload_id

    def append(
        self, upload_id: str, stream: ByteSource, offset: int, length: int | None = None
    ) -> int:
        if length is not None and length < 0:
            raise SizeInvalid(f"negative length {length}")
        with self._locked_data(upload_id, "r+b") as f, self._errors("append to an upload"):
            size = os.fstat(f.fileno()).st_size
            if offset != size:
                raise RangeInvalid(f"append at offset {offset}, but the upload has {size} bytes")
            hasher = self._hashers.at(upload_id, size)
            reader = HashingReader(stream, [hasher] if hasher is not None else [], limit=length)
            f.seek(size)
            try:
                while chunk := reader.read(self._chunk_size):
                    _write_all(f, chunk)
                if length is not None and reader.count != length:
                    raise SizeInvalid(f"stream ended after {reader.count} of {length} bytes")
            except BaseException:
                # NOTE: all or nothing: cut back whatever part of this append landed.
                f.truncate(size)
                raise
            new_size = size + reader.count
            if hasher is not None:
                self._hashers.store(upload_id, new_size, hasher)
            else:
                self._hashers.drop(upload_id)
            return new_size

    def truncate_upload(self, upload_id: str, size: int) -> None:
        with self._locked_data(upload_id, "r+b") as f, self._errors("truncate an upload"):
            current = os.fstat(f.fileno()).st_size
            if not 0 <= size <= current:
                raise RangeInvalid(f"cannot cut an upload of {current} bytes to {size}")
            f.truncate(size)
            self._hashers.drop(upload_id)

    def upload_size(self, upload_id: str) -> int:
        missing = partial(UploadUnknown, f"unknown upload {upload_id!r}")
        with self._errors("stat an upload", missing=missing):
            return os.stat(self._path(keys.upload_data(upload_id))).st_size

    def commit(self, upload_id: str, expected: Digest, expected_size: int | None = None) -> int:
        with self._locked_data(upload_id, "rb") as f, self._errors("commit an upload"):
            size = os.fstat(f.fileno()).st_size
            if expected_size is not None and size != expected_size:
                raise SizeInvalid(f"upload has {size} bytes, not {expected_size}")
            if expected.algorithm is DigestAlgorithm.SHA256:
                actual = self._sha256(upload_id, size, f)
            else:
                actual = self._hash(f, expected.algorithm)
            check_digest(expected, actual)
            target = self._path(keys.blob(expected))
            if not os.path.exists(target):
                os.fsync(f.fileno())
                self._makedirs_durably(os.path.dirname(target))
                os.replace(self._path(keys.upload_data(upload_id)), target)
                _fsync_dir(os.path.dirname(target))
            self._remove_upload(upload_id)
        self._hashers.drop(upload_id)
        return size

    def cancel(self, upload_id: str) -> None:
        with self._locked_data(upload_id, "rb"), self._errors("cancel an upload"):
            self._remove_upload(upload_id)
        self._hashers.drop(upload_id)

    def uploads(self) -> Iterator[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        with self._errors("list uploads"):
            try:
                names = os.listdir(self._path(keys.UPLOADS))
            except FileNotFoundError:
                names = []
            for name in names:
                if keys.is_upload_id(name):
                    started = self._started_at(name)
                    if started is not None:
                        found.append((name, started))
        return iter(found)

    # -- operations ------------------------------------------------------------------

    def check(self) -> None:
        probe = self._path(keys.check_probe(new_upload_id()))
        try:
            for top in (keys.BLOBS, keys.UPLOADS, keys.CHECK):
                os.makedirs(self._path(top), exist_ok=True)
            with open(probe, "xb") as f:
                f.write(b"cargohold")
                os.fsync(f.fileno())
            os.unlink(probe)
        except OSError as e:
            raise StorageError(
                f"blob directory {self._root} is not usable: {e.strerror or e}"
            ) from e

    # -- helpers -----------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self._root, *key.split("/"))

    @contextmanager
    def _errors(
        self, doing: str, missing: Callable[[], DomainError] | None = None
    ) -> Iterator[None]:
        """The choke point: ``OSError`` becomes ``StorageError`` (or ``missing()``)."""
        try:
            yield
        except SourceReadError as e:
            raise e.error from None
        except FileNotFoundError as e:
            if missing is not None:
                raise missing() from None
            raise StorageError(f"failed to {doing}: {e.strerror or e}") from e
        except OSError as e:
            raise StorageError(f"failed to {doing}: {e.strerror or e}") from e

    @contextmanager
    def _locked_data(self, upload_id: str, mode: str) -> Iterator[IO[bytes]]:
        """The upload's ``data`` file, open and exclusively locked; ``UploadUnknown`` if gone."""
        path = self._path(keys.upload_data(upload_id))
        unknown = partial(UploadUnknown, f"unknown upload {upload_id!r}")
        with self._errors("open an upload", missing=unknown):
            # NOTE: unbuffered, so that a failed write leaves nothing pending to flush
            # and truncating back is exact.
            # (closed by the ``with f`` below, outside this block's error mapping)
            f = open(path, mode, buffering=0)  # noqa: SIM115
        with f:
            with self._errors("lock an upload", missing=unknown):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                # NOTE: a commit or cancel may have renamed or removed the file while we
                # waited for the lock; then the path no longer names what we hold.
                if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                    raise unknown() from None
            yield f

    def _sha256(self, upload_id: str, size: int, f: IO[bytes] | None = None) -> str:
        hasher = self._hashers.at(upload_id, size)
        if hasher is not None:
            return str(hasher.hexdigest())
        if f is None:
            path = self._path(keys.upload_data(upload_id))
            with self._errors("hash an upload"), open(path, "rb", buffering=0) as g:
                return self._hash(g, DigestAlgorithm.SHA256)
        return self._hash(f, DigestAlgorithm.SHA256)

    def _hash(self, f: IO[bytes], algorithm: DigestAlgorithm) -> str:
        hasher: Any = algorithm.hasher()
        f.seek(0)
        while chunk := f.read(self._chunk_size):
            hasher.update(chunk)
        return str(hasher.hexdigest())

    def _started_at(self, upload_id: str) -> float | None:
        try:
            with open(self._path(keys.upload_started_at(upload_id)), encoding="ascii") as f:
                return float(f.read())
        except (FileNotFoundError, ValueError):
            # A half-created or half-removed upload: date it by its directory so that a
            # janitor still purges it.
            try:
                return os.stat(self._path(keys.upload(upload_id))).st_mtime
            except FileNotFoundError:
                return None

    def _remove_upload(self, upload_id: str) -> None:
        directory = self._path(keys.upload(upload_id))
        for name in os.listdir(directory):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
        with suppress(FileNotFoundError):
            os.rmdir(directory)

    def _discard(self, upload_id: str) -> None:
        """Best-effort removal of a failed ``put``'s staging (the janitor catches leftovers)."""
        with suppress(UploadUnknown, StorageError):
            self.cancel(upload_id)

    def _makedirs_durably(self, directory: str) -> None:
        if os.path.isdir(directory):
            return
        parent = os.path.dirname(directory)
        self._makedirs_durably(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return
        _fsync_dir(parent)


def _write_all(f: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
