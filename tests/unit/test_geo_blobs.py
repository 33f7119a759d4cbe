"""The blob fetcher (``replay/geo_blobs.py``) against a peer that misbehaves: one whose
connection is cut mid-blob (resumed with ``Range``), one that sends other bytes (not
committed), one that does not hold the blob (retried later). The peer is an
``httpx.MockTransport``; the blob store and the backlog are the embedded adapters."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.adapters.blob_backlog import SQLBlobBacklog
from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.geo_peer import PeerFeed
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.domain.values import Digest
from cargohold.replay.geo_blobs import BlobFetcher

DATA = bytes(range(256)) * 12_000  # ~3 MiB: the fetcher reads 1 MiB chunks
DIGEST = f"sha256:{hashlib.sha256(DATA).hexdigest()}"
NOW = 1_800_000_000_000


class Peer:
    """Serves ``body`` for the blob; ``cut_after`` bytes into the first answer, the
    connection breaks."""

    def __init__(self, body: bytes = DATA, status: int = 200, cut_after: int | None = None):
        self.body = body
        self.status = status
        self.cut_after = cut_after
        self.ranges: list[str | None] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        asked = request.headers.get("Range")
        self.ranges.append(asked)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "no"})
        offset = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        rest = self.body[offset:]
        cut, self.cut_after = self.cut_after, None

        def stream() -> Iterator[bytes]:
            if cut is None:
                yield rest
                return
            yield rest[:cut]
            raise httpx.ReadError("connection reset by peer")

        return httpx.Response(206 if asked else 200, content=stream())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FilesystemBlobStore, SQLBlobBacklog]]:
    db = SQLiteDatabase(tmp_path / "views.sqlite")
    backlog = SQLBlobBacklog(db)
    backlog.create_table()
    backlog.add([(DIGEST, len(DATA))], "peer-site", NOW)
    try:
        yield FilesystemBlobStore(tmp_path / "blobs"), backlog
    finally:
        db.close()


def fetcher(store: FilesystemBlobStore, backlog: SQLBlobBacklog, peer: Peer) -> BlobFetcher:
    feed = PeerFeed("http://peer.test", "token", transport=httpx.MockTransport(peer.handler))
    feeds: Callable[[], dict[str, PeerFeed]] = lambda: {"peer-site": feed}  # noqa: E731
    return BlobFetcher(store, backlog, feeds, "me", now_ms=lambda: NOW)


def test_a_cut_connection_is_resumed_from_the_byte_reached(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog],
) -> None:
    store, backlog = setup
    peer = Peer(cut_after=1_500_000)
    assert fetcher(store, backlog, peer).fetch_due() == 1
    assert b"".join(store.read(Digest.parse(DIGEST))) == DATA
    # The first MiB arrived whole before the cut: the second request asks for the rest.
    assert peer.ranges == [None, f"bytes={1024 * 1024}-"]
    assert backlog.summary() == {}


def test_other_bytes_are_not_committed_and_the_blob_is_retried(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog],
) -> None:
    store, backlog = setup
    assert fetcher(store, backlog, Peer(body=DATA[:-1] + b"x")).fetch_due() == 0
    assert not store.exists(Digest.parse(DIGEST))
    wanted = backlog.get(DIGEST)
    assert wanted is not None and wanted.attempts == 1
    assert backlog.claim("me", NOW, 1000, 10) == []  # not due again at once
    row = backlog.db.query("SELECT last_error FROM blob_backlog")[0][0]
    assert "not blob" in row


def test_a_peer_without_the_blob_leaves_it_queued(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog],
) -> None:
    store, backlog = setup
    assert fetcher(store, backlog, Peer(status=404)).fetch_due() == 0
    assert backlog.summary() == {"peer-site": (1, len(DATA))}
    assert not store.exists(Digest.parse(DIGEST))
