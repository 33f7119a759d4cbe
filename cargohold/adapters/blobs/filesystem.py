"""``BlobStore`` on a local directory tree (the embedded default).

Layout as drawn in ``keys``. An upload is a directory holding ``data`` (the staged
content, appended in place) and ``startedat``; committing fsyncs ``data`` and renames it
to its blob path, then fsyncs that directory, so a committed blob is durable before the
caller records an event saying it exists, and a reader never sees a partial blob.

Appends and commits of one upload take an exclusive ``flock`` on its ``data`` file, so
they serialise across threads and processes sharing the directory.

An append asks the kernel to start writing its pages to disk as it goes
(``sync_file_range``, where the C library has it), so the fsync at commit finds little
left to write; a read returns a ``BlobFile`` (``blob_file.py``), an iterator that is also
a read-only file over the range, which a WSGI server's ``wsgi.file_wrapper`` sends
without copying it through a buffer of its own (cargohold's server, with ``os.sendfile``).

What both stores share (``put``, staging with incremental hashes) is ``base.py``'s.

Every ``OSError`` is translated in ``_errors``, the one choke point.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import IO, Any

from cargohold.adapters.blobs import (
    DEFAULT_CHUNK_SIZE,
    MiB,
    SourceReadError,
    check_digest,
    check_range,
    keys,
    new_upload_id,
)
from cargohold.adapters.blobs.base import StagedBlobStore
from cargohold.adapters.blobs.blob_file import BlobFile
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


class FilesystemBlobStore(StagedBlobStore):
    """Blobs under ``root``; see the module docstring. Nothing touches disk until used."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        new_id: Callable[[], str] = new_upload_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(chunk_size=chunk_size, new_id=new_id, clock=clock)
        self._root = os.fspath(root)

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({self._root!r})"

    # -- committed blobs -------------------------------------------------------------

    def stat(self, digest: Digest) -> int:
        with self._errors("stat a blob", missing=lambda: BlobUnknown(f"unknown blob {digest}")):
            return os.stat(self._path(keys.blob(digest))).st_size

    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> BlobFile:
        # NOTE: validated eagerly, opened lazily: an iterator that is never started then
        # holds no file descriptor.
        size = self.stat(digest)
        length = check_range(size, offset, length)
        return BlobFile(self._path(keys.blob(digest)), digest, offset, length, self._chunk_size)

    def delete(self, digest: Digest) -> bool:
        with self._errors("delete a blob"):
            try:
                os.unlink(self._path(keys.blob(digest)))
            except FileNotFoundError:
                return False
        return True

    # -- staged uploads --------------------------------------------------------------

    def _create_upload(self, upload_id: str, started_at: float) -> None:
        with self._errors("start an upload"):
            os.makedirs(self._path(keys.UPLOADS), exist_ok=True)
            os.mkdir(self._path(keys.upload(upload_id)))
            with open(self._path(keys.upload_data(upload_id)), "xb"):
                pass
            with open(self._path(keys.upload_started_at(upload_id)), "x", encoding="ascii") as f:
                f.write(repr(started_at))

    def append(
        self, upload_id: str, stream: ByteSource, offset: int, length: int | None = None
    ) -> int:
        if length is not None and length < 0:
            raise SizeInvalid(f"negative length {length}")
        with self._locked_data(upload_id, "r+b") as f, self._errors("append to an upload"):
            size = os.fstat(f.fileno()).st_size
            if offset != size:
                raise RangeInvalid(f"append at offset {offset}, but the upload has {size} bytes")
            cached = self._hashers.entry(upload_id, size)
            f.seek(size)
            try:
                count = self._copy(stream, f, cached[1] if cached else None, length)
                if length is not None and count != length:
                    raise SizeInvalid(f"stream ended after {count} of {length} bytes")
            except BaseException:
                # NOTE: all or nothing: cut back whatever part of this append landed.
                f.truncate(size)
                raise
            new_size = size + count
            self._appended(upload_id, cached, new_size)
            return new_size

    def _copy(self, stream: ByteSource, f: IO[bytes], hasher: Any, limit: int | None) -> int:
        """Copy ``stream`` (to its end, or ``limit`` bytes) to ``f`` at its position,
        feeding ``hasher`` (if any); the number of bytes copied."""
        # PERF: one buffer for the whole copy, filled with ``readinto`` where the source
        # has it (waitress's spooled body does), instead of a new bytes object per chunk.
        buffer = memoryview(bytearray(self._chunk_size))
        readinto = getattr(stream, "readinto", None)
        fd = f.fileno()
        start = f.tell()
        count = written_back = 0
        while limit is None or count < limit:
            want = self._chunk_size if limit is None else min(self._chunk_size, limit - count)
            try:
                if readinto is not None:
                    n = readinto(buffer[:want]) or 0
                    piece: bytes | memoryview = buffer[:n]
                else:
                    piece = stream.read(want)
                    n = len(piece)
            except Exception as e:
                raise SourceReadError(e) from e
            if not n:
                break
            if hasher is not None:
                hasher.update(piece)
            _write_all(f, piece)
            count += n
            if count - written_back >= _WRITEBACK_STEP:
                # PERF: the disk writes while we receive the rest, instead of all of it
                # in the fsync at commit (256 MiB: ~1 s fsync without, ~0.05 s with).
                _start_writeback(fd, start + written_back, count - written_back)
                written_back = count
        return count

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
            actual = self._cached_hex(upload_id, size, expected.algorithm)
            if actual is None:
                actual = self._hash(f, expected.algorithm)
            check_digest(expected, actual)
            target = self._path(keys.blob(expected))
            if not os.path.exists(target):
                # NOTE: fdatasync suffices before the rename: it also writes the size.
                _fdatasync(f.fileno())
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

    def _rehash(self, upload_id: str, algorithm: DigestAlgorithm) -> str:
        path = self._path(keys.upload_data(upload_id))
        with self._errors("hash an upload"), open(path, "rb", buffering=0) as g:
            return self._hash(g, algorithm)

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


_WRITEBACK_STEP = 8 * MiB
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range`` (Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``[offset, offset + length)`` of ``fd`` to disk.

    Only a head start for the fsync at commit, which alone makes content durable: where
    the call does not exist or fails, nothing is lost but time.
    """
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _fdatasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def _write_all(f: IO[bytes], data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
