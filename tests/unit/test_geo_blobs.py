"""The blob fetcher (``replay/geo_blobs.py``) against a peer that misbehaves: one whose
connection is cut mid-blob (resumed with ``Range``), one that sends other bytes (not
committed), one that does not hold the blob (retried later). The peer is an
``httpx.MockTransport``; the blob store and the backlog are the embedded adapters."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.adapters.blob_backlog import SQLBlobBacklog
from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.geo_peer import PeerFeed
from cargohold.adapters.peer_links import SQLPeerLinks
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.bootstrap.stores import move_geo_tables
from cargohold.domain.values import Digest
from cargohold.replay import geo_blobs
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


def fetcher(
    store: FilesystemBlobStore, backlog: SQLBlobBacklog, peer: Peer, parts: Path | None = None
) -> BlobFetcher:
    feed = PeerFeed("http://peer.test", "token", transport=httpx.MockTransport(peer.handler))
    feeds: Callable[[], dict[str, PeerFeed]] = lambda: {"peer-site": feed}  # noqa: E731
    return BlobFetcher(store, backlog, feeds, "me", now_ms=lambda: NOW, parts=parts)


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


def _due_again(backlog: SQLBlobBacklog) -> None:
    """The retry's time has come (and the claim of the fetcher before has lapsed)."""
    with backlog.db.transaction() as c:
        c.execute("UPDATE blob_backlog SET next_ms = 0, claim = NULL")


class DownAfterCut(Peer):
    """Cuts the first answer ``cut_after`` bytes in, then refuses every request (a
    peer gone, or this site stopping mid-fetch)."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.ranges:
            self.ranges.append(request.headers.get("Range"))
            raise httpx.ConnectError("connection refused")
        return super().handler(request)


def test_a_fetch_after_a_failed_one_asks_only_for_the_bytes_not_kept(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog], tmp_path: Path
) -> None:
    """The first fetch (in a process that then stops, say) keeps what arrived in its
    part file; a new fetcher, with a healthy peer, reads it back and asks for the rest."""
    store, backlog = setup
    parts = tmp_path / "geo-fetch"
    first = fetcher(store, backlog, DownAfterCut(cut_after=2_500_000), parts)
    assert first.fetch_due() == 0 and not store.exists(Digest.parse(DIGEST))
    kept = (parts / f"{DIGEST.split(':')[1]}.part").stat().st_size
    assert kept == 2 * 1024 * 1024  # the whole chunks that arrived before the cut
    _due_again(backlog)
    peer = Peer()
    assert fetcher(store, backlog, peer, parts).fetch_due() == 1
    assert peer.ranges == [f"bytes={kept}-"]
    assert b"".join(store.read(Digest.parse(DIGEST))) == DATA
    assert list(parts.iterdir()) == []  # done with


def test_a_kept_part_of_wrong_bytes_is_dropped_and_the_blob_fetched_whole(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog], tmp_path: Path
) -> None:
    store, backlog = setup
    parts = tmp_path / "geo-fetch"
    parts.mkdir()
    (parts / f"{DIGEST.split(':')[1]}.part").write_bytes(b"x" * 1_500_000)
    peer = Peer()
    assert fetcher(store, backlog, peer, parts).fetch_due() == 0  # the part fails the digest
    assert list(parts.iterdir()) == []
    _due_again(backlog)
    assert fetcher(store, backlog, peer, parts).fetch_due() == 1
    assert peer.ranges == ["bytes=1500000-", None]
    assert b"".join(store.read(Digest.parse(DIGEST))) == DATA


class Stalling(Peer):
    """Sends the first MiB, then holds the connection until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.sending = threading.Event()

    def handler(self, request: httpx.Request) -> httpx.Response:
        def stream() -> Iterator[bytes]:
            yield DATA[: 1024 * 1024]
            self.sending.set()
            assert self.go.wait(10)
            yield DATA[1024 * 1024 :]

        return httpx.Response(200, content=stream())


def test_a_long_fetch_keeps_its_claim_and_a_dead_fetchers_claim_lapses(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch that outlasts the lease renews it (no second fetcher takes the blob); a
    claim nobody renews, a killed fetcher's, lapses after one lease."""
    monkeypatch.setattr(geo_blobs, "CLAIM_MS", 300)
    store, backlog = setup
    clock = [NOW]
    peer = Stalling()
    feed = PeerFeed("http://peer.test", "token", transport=httpx.MockTransport(peer.handler))
    slow = BlobFetcher(store, backlog, lambda: {"peer-site": feed}, "me", now_ms=lambda: clock[0])
    running = threading.Thread(target=slow.fetch_due)
    running.start()
    try:
        assert peer.sending.wait(10)
        clock[0] += 1_000  # three leases later, as the fetcher's clock reads it
        time.sleep(0.5)  # the fetcher renews every 100 ms
        assert backlog.claim("other", clock[0], 300, 10) == []
    finally:
        peer.go.set()
        running.join(10)
    assert slow.fetched == 1 and store.exists(Digest.parse(DIGEST))

    backlog.add([("sha256:" + "0" * 64, 10)], "peer-site", NOW)
    assert [w.digest for w in backlog.claim("killed", NOW, 300, 10)] == ["sha256:" + "0" * 64]
    assert backlog.claim("next", NOW + 300, 300, 10) == []  # still the killed one's
    assert len(backlog.claim("next", NOW + 301, 300, 10)) == 1  # lapsed: the next takes it


def test_a_blob_no_peer_could_be_reached_for_is_retried_within_a_second(
    setup: tuple[FilesystemBlobStore, SQLBlobBacklog],
) -> None:
    """However many times it failed: the link is at fault, not the blob; while a peer
    that answers without it backs off as before."""
    store, backlog = setup
    with backlog.db.transaction() as c:
        c.execute("UPDATE blob_backlog SET attempts = 9")
    down = DownAfterCut()
    down.ranges.append(None)  # refuses from the first request on
    assert fetcher(store, backlog, down).fetch_due() == 0
    [(next_ms,)] = backlog.db.query("SELECT next_ms FROM blob_backlog")
    assert NOW < next_ms <= NOW + geo_blobs.UNREACHABLE_RETRY_MS
    _due_again(backlog)
    with backlog.db.transaction() as c:
        c.execute("UPDATE blob_backlog SET attempts = 9")
    assert fetcher(store, backlog, Peer(status=404)).fetch_due() == 0
    [(next_ms,)] = backlog.db.query("SELECT next_ms FROM blob_backlog")
    assert next_ms == NOW + geo_blobs.MAX_RETRY_MS


def test_a_backlog_kept_in_the_views_file_by_an_earlier_version_moves_to_its_own(
    tmp_path: Path,
) -> None:
    """Data dirs made before ``geo.sqlite`` held the backlog in ``views.sqlite``: its
    blobs are still fetched after an upgrade, and the old tables are gone."""
    views, geo = SQLiteDatabase(tmp_path / "views.sqlite"), SQLiteDatabase(tmp_path / "geo.sqlite")
    try:
        old = SQLBlobBacklog(views)
        old.create_table()
        old.add([(DIGEST, 7)], "site-a", now_ms=5)
        SQLPeerLinks(views).create_table()
        moved = SQLBlobBacklog(geo)
        moved.create_table()
        move_geo_tables(views, geo)
        [wanted] = moved.claim("me", now_ms=10, lease_ms=1000, limit=5)
        assert (wanted.digest, wanted.size, wanted.site_id) == (DIGEST, 7, "site-a")
        assert views.query("SELECT name FROM sqlite_master WHERE type = 'table'") == []
        move_geo_tables(views, geo)  # once moved, a second start has nothing to move
    finally:
        views.close()
        geo.close()
