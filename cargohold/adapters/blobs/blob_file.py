"""A committed blob of the filesystem store, as ``read`` returns it: chunks, or a file
that the server sends with ``os.sendfile``."""

from __future__ import annotations

import os

from cargohold.domain.errors import BlobUnknown, StorageError
from cargohold.domain.values import Digest


class BlobFile:
    """Bytes ``[offset, offset + length)`` of one blob file, as ``read`` returns them.

    An iterator of chunks of at most ``chunk_size`` bytes (the ``BlobStore.read``
    contract), and also a read-only, seekable file whose positions run from 0 to
    ``length``: falcon hands such a response stream to ``wsgi.file_wrapper``, and
    cargohold's server sends it from the descriptor with ``os.sendfile``
    (``sendfile_source``) instead of copying every chunk through an output buffer,
    which in waitress spills to a temporary file past 1 MiB. The descriptor is opened at
    the first read and closed at the end of the iteration or by ``close``; reads use
    ``pread``, so no shared file offset is involved.
    """

    def __init__(
        self, path: str, digest: Digest, offset: int, length: int, chunk_size: int
    ) -> None:
        self._path = path
        self._digest = digest
        self._offset = offset
        self._length = length
        self._chunk_size = chunk_size
        self._position = 0
        self._fd: int | None = None
        self.closed = False

    def __iter__(self) -> BlobFile:
        return self

    def __next__(self) -> bytes:
        chunk = self.read(self._chunk_size)
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def read(self, size: int = -1, /) -> bytes:
        if self.closed:
            raise ValueError("read from a closed BlobFile")
        remaining = self._length - self._position
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size <= 0:
            return b""
        fd = self._descriptor()
        try:
            data = os.pread(fd, size, self._offset + self._position)
        except OSError as e:
            raise StorageError(f"failed to read a blob: {e.strerror or e}") from e
        if not data:
            raise StorageError(f"blob {self._digest} is shorter than its recorded size")
        self._position += len(data)
        return data

    def _descriptor(self) -> int:
        if self.closed:
            raise ValueError("read from a closed BlobFile")
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise BlobUnknown(f"unknown blob {self._digest}") from None
            except OSError as e:
                raise StorageError(f"failed to open a blob: {e.strerror or e}") from e
        return self._fd

    def sendfile_source(self) -> tuple[int, int]:
        """The descriptor and the absolute offset of the current position, for a server
        that sends the rest with ``os.sendfile`` (``http/server/sendfile.py``) and then moves the
        position with ``seek``."""
        return self._descriptor(), self._offset + self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = os.SEEK_SET, /) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}
        if whence not in base:
            raise ValueError(f"invalid whence {whence}")
        target = base[whence] + position
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._position = target
        return target

    def close(self) -> None:
        self.closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> BlobFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # NOTE: a response that is never sent (a client gone before the first byte)
        # must not leak the descriptor.
        if self._fd is not None:
            self.close()


# PERF: how much an append writes before it asks the kernel to start writing it out.
