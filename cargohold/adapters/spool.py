"""Single-flight fetches of upstream blobs, streamed to every waiting client while they
land (the pull-through cache's ``Spool``, ``commands/pull_through.py``).

One directory on local disk (``<data_dir>/cache-spool``), three files per blob in flight:

- ``<alg>-<hex>.lock``: whoever holds its ``flock`` is the *leader*, the one fetch of the
  blob from the upstream. ``flock`` locks belong to open file descriptions, so threads of
  one process and the processes of ``serve --workers`` elect one leader the same way; a
  leader that dies (even by SIGKILL) releases it with its descriptors.
- ``<alg>-<hex>.part``: the bytes so far. The leader's copier thread appends each chunk
  as it arrives; every client (the leader's own included) reads the file behind it, so
  the first client gets its first bytes at once and a client that hangs up stops only its
  own reading, never the fetch.
- ``<alg>-<hex>.size``: the blob's size, published (by rename) once the upstream
  answered, so that followers can send their ``Content-Length``.

When the copy is complete (and the digest verified by the upstream client) the leader
commits: the blob goes into the blob store and is linked, then the spool files go and the
lock is released. A reader that sees the leader gone before its bytes are all there stops
with ``UpstreamUnreachable`` (its client sees a short body and retries). Content is
addressed by digest, so a reader that read a dead leader's prefix and goes on with a new
leader's file reads the same bytes at the same offsets. Several hosts each fetch once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import BinaryIO

from cargohold.domain.errors import UpstreamUnreachable
from cargohold.domain.upstream import UpstreamBlob
from cargohold.domain.values import Digest

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024
# A reader checks that its leader lives at most this often while it waits for bytes.
_LIVENESS_S = 0.1


class SpoolDir:
    """``commands.pull_through.Spool`` on a local directory (the module docstring)."""

    def __init__(self, root: Path, *, poll_s: float = 0.002, wait_s: float = 120.0) -> None:
        self.root = root
        self.poll_s = poll_s
        self.wait_s = wait_s
        root.mkdir(parents=True, exist_ok=True)

    def fetch(
        self,
        digest: Digest,
        open_upstream: Callable[[], AbstractContextManager[UpstreamBlob]],
        commit: Callable[[BinaryIO, int], None],
        stored: Callable[[], bool],
    ) -> tuple[int, Iterator[bytes]] | None:
        """The blob's size and its chunks, fetched once however many ask at a time;
        None when it is in the blob store (read it there). Errors opening the upstream
        (before any byte) reach the caller that leads; followers of a leader that
        failed get ``UpstreamUnreachable``."""
        base = self.root / f"{digest.algorithm.value}-{digest.hex}"
        for _ in range(3):
            if stored():
                return None
            lock = os.open(f"{base}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                size = self._published_size(base)
                if size is None:
                    continue  # the leader went before it knew the size: elect again
                followed = self._follow(base, size, digest)
                if followed is not None or stored():
                    return followed
                continue  # the leader went before we could read its file: elect again
            handed_over = False
            try:
                if stored():  # a leader finished between our check and our lock
                    return None
                size, handed_over, reader = self._lead(base, lock, digest, open_upstream, commit)
            finally:
                if not handed_over:
                    os.close(lock)
            if size is None or reader is None:
                return None  # the upstream named no size: fetched whole, now stored
            return size, self._read(reader, base, size, digest)
        raise UpstreamUnreachable(f"the fetch of blob {digest} from the upstream keeps failing")

    # -- the leader ----------------------------------------------------------------------

    def _lead(
        self,
        base: Path,
        lock: int,
        digest: Digest,
        open_upstream: Callable[[], AbstractContextManager[UpstreamBlob]],
        commit: Callable[[BinaryIO, int], None],
    ) -> tuple[int | None, bool, BinaryIO | None]:
        """Open the upstream and start the copier: ``(size, whether the copier took
        the lock, the leader's own reader of the file)``. The reader is opened before the
        copier starts: a copier that fails at once removes the file, and the leader's
        client must still see the failure, not a missing file. A size of None (the
        upstream named none) means the blob was copied and committed before returning."""
        _remove(f"{base}.size")
        part = open(f"{base}.part", "wb")  # noqa: SIM115 - the copier closes it
        try:
            context = open_upstream()
            blob = context.__enter__()
        except BaseException:
            part.close()
            _remove(f"{base}.part")
            raise
        if blob.size < 0:
            _copy(base, None, digest, context, blob, part, commit)
            return None, False, None
        reader = open(f"{base}.part", "rb")  # noqa: SIM115 - closed by _read
        tmp = f"{base}.size.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "w") as out:
            out.write(str(blob.size))
        os.replace(tmp, f"{base}.size")
        threading.Thread(
            target=_copy,
            args=(base, lock, digest, context, blob, part, commit),
            name=f"cache-fetch-{digest.hex[:12]}",
            daemon=True,
        ).start()
        return blob.size, True, reader

    # -- the readers ---------------------------------------------------------------------

    def _published_size(self, base: Path) -> int | None:
        """The size the leader published, waiting while it lives; None when it went."""
        deadline = time.monotonic() + self.wait_s
        checked = time.monotonic()
        while time.monotonic() < deadline:
            try:
                with open(f"{base}.size") as f:
                    return int(f.read())
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() - checked >= _LIVENESS_S:
                checked = time.monotonic()
                if not _leader_alive(base):
                    return None
            time.sleep(self.poll_s)
        return None

    def _follow(self, base: Path, size: int, digest: Digest) -> tuple[int, Iterator[bytes]] | None:
        try:
            part = open(f"{base}.part", "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            return None  # the leader ended meanwhile (the caller asks the store)
        return size, self._read(part, base, size, digest)

    def _read(self, part: BinaryIO, base: Path, size: int, digest: Digest) -> Iterator[bytes]:
        sent = 0
        checked = time.monotonic()
        with part:
            while sent < size:
                chunk = part.read(min(READ_BYTES, size - sent))
                if chunk:
                    sent += len(chunk)
                    yield chunk
                    continue
                if time.monotonic() - checked >= _LIVENESS_S:
                    checked = time.monotonic()
                    if not _leader_alive(base):
                        # Bytes the leader wrote just before it ended are still to read.
                        chunk = part.read(min(READ_BYTES, size - sent))
                        if not chunk:
                            raise UpstreamUnreachable(
                                f"the upstream fetch of blob {digest} broke off after "
                                f"{sent} of {size} bytes"
                            )
                        sent += len(chunk)
                        yield chunk
                        continue
                time.sleep(self.poll_s)


def _copy(
    base: Path,
    lock: int | None,
    digest: Digest,
    context: AbstractContextManager[UpstreamBlob],
    blob: UpstreamBlob,
    part: BinaryIO,
    commit: Callable[[BinaryIO, int], None],
) -> None:
    """Copy the upstream's bytes into ``part``, then commit them. With a ``lock`` this is
    the copier thread: it logs a failure and releases the lock at the end; without, the
    caller holds the lock and gets the failure."""
    ok = False
    exited = False
    try:
        with part:
            for chunk in blob.chunks:  # raises at its end if the digest differs
                part.write(chunk)
                part.flush()
            written = part.tell()
        exited = True
        context.__exit__(None, None, None)
        with open(f"{base}.part", "rb") as source:
            commit(source, written)
        ok = True
    except Exception as error:  # NOTE: a copier thread's failure is logged, not raised
        if not exited:
            context.__exit__(type(error), error, error.__traceback__)
        log.warning("the cache's fetch of blob %s failed: %s", digest, error)
        if lock is None:
            raise
    finally:
        _remove(f"{base}.size")
        _remove(f"{base}.part")
        if lock is not None:
            if ok:
                _remove(f"{base}.lock")
            os.close(lock)


def _leader_alive(base: Path) -> bool:
    """Whether a leader holds the lock (probed with a shared lock, released at once)."""
    try:
        fd = os.open(f"{base}.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False  # a leader that succeeded removes it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
