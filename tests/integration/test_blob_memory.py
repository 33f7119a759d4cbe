"""Blobs stream: pushing and pulling 2 GiB holds no more than a few part buffers.

Each adapter moves 2 GiB of deterministic pseudo-random content, generated on the fly,
through ``put``/``read`` and through a three-chunk staged upload, while a sampler watches
this process's resident set. The growth must stay below ``LIMIT``; the figures are
printed (run with ``-s``).
"""

from __future__ import annotations

import functools
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.blobs.s3 import S3BlobStore
from cargohold.domain.ports import BlobStore
from cargohold.domain.values import Digest, DigestAlgorithm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MiB = 1024 * 1024
SIZE = 2048 * MiB
LIMIT = 64 * MiB
BLOCK = MiB
SEED = 20240601

T = TypeVar("T")


class PseudoRandomStream:
    """``size`` bytes from a seeded generator, made block by block as they are read.

    The content depends only on ``seed`` and ``size``, never on how callers size their
    reads, so two passes (one to learn the digest, one to upload) see the same bytes.
    """

    def __init__(self, size: int, seed: int = SEED) -> None:
        self._rng = random.Random(seed)
        self._remaining = size
        self._block = b""

    def read(self, size: int) -> bytes:
        if not self._block:
            if self._remaining == 0:
                return b""
            self._block = self._rng.randbytes(BLOCK)[: self._remaining]
            self._remaining -= len(self._block)
        data, self._block = self._block[:size], self._block[size:]
        return data


class Window:
    """``length`` bytes of ``source``, the way an HTTP body is a window on a client."""

    def __init__(self, source: PseudoRandomStream, length: int) -> None:
        self._source = source
        self._remaining = length

    def read(self, size: int) -> bytes:
        data = self._source.read(min(size, self._remaining))
        self._remaining -= len(data)
        return data


@functools.cache
def digest_of_content(algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> Digest:
    hasher = algorithm.hasher()
    stream = PseudoRandomStream(SIZE)
    while chunk := stream.read(BLOCK):
        hasher.update(chunk)
    return Digest(algorithm, hasher.hexdigest())


class RssSampler:
    """The peak growth of this process's resident set over a ``with`` block.

    Two witnesses: a thread sampling ``VmRSS`` every few milliseconds, and ``VmHWM``
    (the kernel's own peak), reset on entry through ``/proc/self/clear_refs``.
    """

    def __init__(self) -> None:
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._hwm_reset = False

    def __enter__(self) -> RssSampler:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            pass
        self.baseline = self.peak = _status_kib("VmRSS") * 1024
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm_reset:
            self.peak = max(self.peak, _status_kib("VmHWM") * 1024)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_kib("VmRSS") * 1024)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def measured(label: str, action: Callable[[], T]) -> T:
    started = time.monotonic()
    with RssSampler() as rss:
        result = action()
    seconds = time.monotonic() - started
    print(
        f"\n{label}: RSS growth {rss.growth / MiB:.1f} MiB "
        f"(baseline {rss.baseline / MiB:.1f} MiB), {SIZE / MiB / seconds:.0f} MiB/s"
    )
    assert rss.growth < LIMIT, f"{label} grew the RSS by {rss.growth / MiB:.1f} MiB"
    return result


def hash_read_back(store: BlobStore, digest: Digest) -> str:
    hasher = digest.algorithm.hasher()
    size = 0
    chunks: Iterator[bytes] = store.read(digest)
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    assert size == SIZE
    return str(hasher.hexdigest())


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.minio)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        root = tmp_path / "blobs"
        yield FilesystemBlobStore(root)
        shutil.rmtree(root, ignore_errors=True)  # 2 GiB is too much to leave in /tmp
    else:
        server: Any = request.getfixturevalue("minio_server")
        bucket: str = request.getfixturevalue("minio_bucket")
        yield S3BlobStore(server.client(), bucket)


def test_put_and_read_2gib(store: BlobStore, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.id
    expected = digest_of_content()

    digest, size = measured(
        f"{name} put", lambda: store.put(PseudoRandomStream(SIZE), expected, SIZE)
    )
    assert (digest, size) == (expected, SIZE)

    assert measured(f"{name} read", lambda: hash_read_back(store, expected)) == expected.hex


def test_staged_upload_of_2gib_in_three_chunks(
    store: BlobStore, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    expected = digest_of_content()
    source = PseudoRandomStream(SIZE)
    first = 700 * MiB + 1  # odd sizes: no chunk boundary lines up with a block
    second = 650 * MiB + 7

    def upload() -> int:
        upload_id = store.start_upload()
        offset = store.append(upload_id, Window(source, first), 0, first)
        offset = store.append(upload_id, Window(source, second), offset, second)
        offset = store.append(upload_id, Window(source, SIZE - offset), offset)
        assert offset == SIZE
        return store.commit(upload_id, expected, SIZE)

    assert measured(f"{name} staged upload (3 appends + commit)", upload) == SIZE
    assert store.stat(expected) == SIZE
    assert list(store.uploads()) == []
    assert measured(f"{name} read", lambda: hash_read_back(store, expected)) == expected.hex
