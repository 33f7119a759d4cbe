"""Deterministic, incompressible blob content for the transfer measurements.

A blob of ``size`` bytes for ``seed`` is made of 1 MiB blocks: one seeded random block with
``(seed, index)`` written over its first 16 bytes, so no two blocks (and no two seeds'
blobs) are equal, and building 512 MiB costs a memory copy, not a random generator run.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 1 << 20
_BASE = random.Random(20_240_601).randbytes(BLOCK)  # noqa: S311 (content, not secrets)


@dataclass(frozen=True)
class Blob:
    data: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, size: int = BLOCK) -> Iterator[bytes]:
        """The blob in ``size`` pieces (views would do, but http.client's chunked encoder
        wants ``bytes``)."""
        view = memoryview(self.data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])


def blocks(size: int, seed: int) -> Iterator[bytes]:
    """The content of ``make_blob(size, seed)`` block by block, never all in memory."""
    for i in range(-(-size // BLOCK)):
        stamp = (seed & (1 << 64) - 1).to_bytes(8, "big") + i.to_bytes(8, "big")
        yield (stamp + _BASE[16:])[: min(BLOCK, size - i * BLOCK)]


def make_blob(size: int, seed: int) -> Blob:
    data = b"".join(blocks(size, seed))
    return Blob(data, "sha256:" + hashlib.sha256(data).hexdigest())
