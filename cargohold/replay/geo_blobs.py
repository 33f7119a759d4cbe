"""The blob fetcher: brings the blobs that geo peers' events name, and that this site
lacks, into its blob store, in the background (``docs/geo-replication.md``, "Blobs").

The replicator queues them (``adapters/blob_backlog.py``) before it stores the events
that name them. The fetcher claims due ones, several at a time, and streams each from
``GET <peer>/replication/v1/blobs/{digest}`` into the blob store:

- the peer whose events named it is asked first, then the others (it may have reached
  them first);
- the bytes are verified against the digest and the size before the blob is committed
  (``BlobStore.put``);
- a connection cut mid-blob is resumed with ``Range`` from the byte reached, a few
  times, within one fetch;
- across a failed fetch, a restart or a crash too: the bytes of a blob of
  ``PART_MIN_BYTES`` or more are also kept in ``<data_dir>/geo-fetch/<hex>.part`` as
  they arrive, and the next fetch reads them back and asks the peer only for the rest.
  The part is deleted once the blob is committed. It needs no fsync: whatever a crash
  leaves of it is checked with the rest (the digest), and a part whose bytes are wrong
  is dropped and the blob fetched again from its first byte;
- a failure is retried later, with backoff; a blob that no peer could be reached for
  is retried within ``UNREACHABLE_RETRY_MS``, so it comes once a link heals; the
  backlog is in ``site status``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from cargohold.adapters.blob_backlog import SQLBlobBacklog, Wanted
from cargohold.adapters.geo_peer import BlobMissing, PeerError, PeerFeed, PeerUnreachable
from cargohold.adapters.peer_links import SQLPeerLinks
from cargohold.domain.clock import system_wall_ms
from cargohold.domain.errors import BlobUnknown, DomainError, UpstreamUnreachable
from cargohold.domain.geo import blob_signature
from cargohold.domain.ports import BlobStore, ByteSource
from cargohold.domain.upstream import UpstreamBlob, UpstreamError, UpstreamInvalid
from cargohold.domain.values import Digest

log = logging.getLogger(__name__)

#: A claim's lease. Renewed every third of it while the fetch runs, so that a fetcher
#: that dies holds its blobs this long at most.
CLAIM_MS = 30_000
MAX_RESUMES = 5
MAX_RETRY_MS = 60_000
#: When no peer could be reached at all, the blob is not at fault: the link is. It is
#: tried again this soon, whatever its attempts, so that a healed link brings it at once.
UNREACHABLE_RETRY_MS = 1_000
#: The smallest blob whose bytes are kept in a part file while they arrive.
PART_MIN_BYTES = 1024 * 1024


class _Resuming:
    """A ``ByteSource`` over a peer's blob that resumes a cut read with ``Range``; given
    ``part``, it first reads back the bytes an earlier fetch kept there, and appends to
    it what the peer sends."""

    def __init__(self, feed: PeerFeed, digest: str, part: Path | None = None) -> None:
        self.feed = feed
        self.digest = digest
        self.offset = 0
        self.resumes = 0
        self._stack = ExitStack()
        self._chunks: Iterator[bytes] | None = None
        self._buffer = b""
        self._kept: IO[bytes] | None = None
        self._keep: IO[bytes] | None = None
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            if part.exists():
                self._kept = part.open("rb")
            self._keep = part.open("ab")

    def close(self) -> None:
        self._stack.close()
        for f in (self._kept, self._keep):
            if f is not None:
                f.close()

    def _next_chunk(self) -> bytes:
        if self._kept is not None:
            chunk = self._kept.read(1024 * 1024)
            if chunk:
                return chunk
            self._kept.close()
            self._kept = None
        chunk = self._peer_chunk()
        if self._keep is not None and chunk:
            self._keep.write(chunk)
        return chunk

    def _peer_chunk(self) -> bytes:
        while True:
            if self._chunks is None:
                self._stack.close()
                self._stack = ExitStack()
                self._chunks = self._stack.enter_context(self.feed.blob(self.digest, self.offset))
            try:
                return next(self._chunks, b"")
            except PeerError:
                if self.resumes >= MAX_RESUMES:
                    raise
                self.resumes += 1
                self._chunks = None  # again from ``offset``

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer:
            self._buffer = self._next_chunk()
            self.offset += len(self._buffer)
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class BlobFetcher:
    """Works through ``backlog`` into ``blobs`` from the peers ``feeds`` gives (site id
    -> its feed, of the peers whose site id is known)."""

    def __init__(
        self,
        blobs: BlobStore,
        backlog: SQLBlobBacklog,
        feeds: Callable[[], dict[str, PeerFeed]],
        owner: str,
        *,
        parallel: int = 4,
        interval: float = 0.2,
        now_ms: Callable[[], int] = system_wall_ms,
        parts: Path | None = None,
    ) -> None:
        self.blobs = blobs
        self.parts = parts
        self.backlog = backlog
        self.feeds = feeds
        self.owner = owner
        self.parallel = parallel
        self.interval = interval
        self._now_ms = now_ms
        self.fetched = 0

    def fetch_due(self) -> int:
        """Fetch the blobs due now (up to ``parallel`` at once); how many were stored."""
        wanted = self.backlog.claim(self.owner, self._now_ms(), CLAIM_MS, self.parallel * 4)
        if not wanted:
            return 0
        feeds = self.feeds()
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="geo-blob") as pool:
            running = {pool.submit(self.fetch, w, feeds): w.digest for w in wanted}
            done = 0
            while running:
                finished, _ = wait(running, timeout=CLAIM_MS / 3000)
                done += sum(1 for f in finished if f.result())
                for f in finished:
                    del running[f]
                if running:  # still at it: keep the claims
                    self.backlog.renew(self.owner, list(running.values()), self._now_ms(), CLAIM_MS)
        self.fetched += done
        return done

    def fetch(self, wanted: Wanted, feeds: dict[str, PeerFeed]) -> bool:
        """Fetch one blob; whether it is here now (the backlog row is settled either way)."""
        digest = Digest.parse(wanted.digest)
        if self.blobs.exists(digest):
            self.backlog.done(wanted.digest)
            return True
        error = "no peer is known yet"
        unreachable = bool(feeds)  # until a peer answers
        part = self._part(digest, wanted.size)
        for feed in _ordered(feeds, wanted.site_id):
            source = _Resuming(feed, wanted.digest, part)
            try:
                self.blobs.put(source, expected=digest, expected_size=wanted.size)
            except BlobMissing as e:
                error, unreachable = str(e), False
                continue
            except PeerError as e:
                error = str(e)
                unreachable = unreachable and isinstance(e, PeerUnreachable)
                continue
            except DomainError as e:  # NOTE: DigestInvalid, SizeInvalid: not these bytes
                unreachable = False
                error = f"{feed.base_url} sent bytes that are not blob {wanted.digest}: {e}"
                log.warning("geo blob %s: %s", wanted.digest, error)
                if part is not None:
                    part.unlink(missing_ok=True)  # what was kept may be the wrong part
                continue
            finally:
                source.close()
            if part is not None:
                part.unlink(missing_ok=True)
            self.backlog.done(wanted.digest)
            return True
        wait = min(MAX_RETRY_MS, 500 * 2 ** min(wanted.attempts, 10))
        if unreachable:
            wait = min(wait, UNREACHABLE_RETRY_MS)
        self.backlog.failed(wanted.digest, error, self._now_ms() + wait)
        return False

    def _part(self, digest: Digest, size: int) -> Path | None:
        """Where a fetch of the blob keeps its bytes as they arrive (None: it does not)."""
        if self.parts is None or size < PART_MIN_BYTES:
            return None
        return self.parts / f"{digest.hex}.part"

    def run(self, stop: threading.Event) -> None:
        """``fetch_due`` until ``stop``: at once while blobs come, else every ``interval``."""
        while not stop.is_set():
            try:
                more = self.fetch_due()
            except Exception:  # NOTE: this site's store failing: logged, retried
                log.exception("fetching blobs from geo peers failed")
                more = 0
            if not more:
                stop.wait(self.interval)


def _ordered(feeds: dict[str, PeerFeed], first: str) -> Sequence[PeerFeed]:
    head = [feeds[first]] if first in feeds else []
    return head + [f for site, f in sorted(feeds.items()) if site != first]


def queue_missing(
    blobs: BlobStore, backlog: SQLBlobBacklog, now_ms: Callable[[], int] = system_wall_ms
) -> Callable[[list[tuple[str, int]], str], None]:
    """What a replicator calls with the blobs a page names and the peer's site id: the
    ones this site lacks go into the backlog."""

    def queue(refs: list[tuple[str, int]], peer: str) -> None:
        missing = [(d, size) for d, size in dict(refs).items() if not blobs.exists(Digest.parse(d))]
        backlog.add(missing, peer, now_ms())

    return queue


class PeerFeeds:
    """One blob client per configured peer, by the site id its replicator recorded
    (``peer_links``; a peer not read yet is not offered). Asked at most once a second."""

    def __init__(self, links: SQLPeerLinks, urls: tuple[str, ...], token: str) -> None:
        self._links = links
        self._urls = urls
        self._token = token
        self._feeds: dict[str, PeerFeed] = {}
        self._sites: tuple[float, dict[str, str]] = (0.0, {})
        self._lock = threading.Lock()

    def sites(self) -> dict[str, str]:
        """Peer site id -> its URL."""
        with self._lock:
            at, known = self._sites
            if time.monotonic() - at > 1.0:
                known = {
                    link.site_id: link.url
                    for link in self._links.links(self._urls)
                    if link.site_id is not None
                }
                self._sites = (time.monotonic(), known)
            return known

    def __call__(self) -> dict[str, PeerFeed]:
        found: dict[str, PeerFeed] = {}
        for site, url in self.sites().items():
            with self._lock:
                feed = self._feeds.get(url)
                if feed is None:
                    feed = self._feeds[url] = PeerFeed(url, self._token)
            found[site] = feed
        return found


class GeoRedirects:
    """``geo_missing_blobs = redirect``: a blob this site lacks and a peer's events named
    is answered with a 307 to that peer's signed, short-lived URL of it."""

    def __init__(
        self,
        base: BlobStore,
        backlog: SQLBlobBacklog,
        feeds: PeerFeeds,
        token: str,
        ttl_s: int = 300,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.backlog = backlog
        self.feeds = feeds
        self._token = token
        self.ttl_s = ttl_s
        self._now_s = now_s

    def redirect(self, digest: Digest) -> str | None:
        """The URL to send a client to for ``digest``, or None (here, or unknown)."""
        if self.base.exists(digest):
            return None
        wanted = self.backlog.get(str(digest))
        if wanted is None:
            return None
        url = self.feeds.sites().get(wanted.site_id)
        if url is None:
            return None
        expires = int(self._now_s()) + self.ttl_s
        signature = blob_signature(self._token, str(digest), expires)
        return f"{url}/replication/v1/blobs/{digest}?expires={expires}&signature={signature}"


class _PeerBlob:
    """A peer's blob as the spool reads an upstream's (``domain.upstream.UpstreamBlob``):
    its size and chunks, resumed after a cut, and checked against the digest at the end
    (``UpstreamInvalid``: the spool then commits nothing)."""

    def __init__(self, feed: PeerFeed, digest: Digest, size: int) -> None:
        self.size = size
        self._source = _Resuming(feed, str(digest))
        self._digest = digest

    def __enter__(self) -> UpstreamBlob:
        return UpstreamBlob(self.size, self._chunks())

    def __exit__(self, *exc: object) -> None:
        self._source.close()

    def _chunks(self) -> Iterator[bytes]:
        hasher = hashlib.new(self._digest.algorithm.value)
        got = 0
        try:
            while chunk := self._source.read(CHUNK):
                hasher.update(chunk)
                got += len(chunk)
                yield chunk
        except PeerError as e:
            raise UpstreamUnreachable(str(e)) from None
        if got != self.size or hasher.hexdigest() != self._digest.hex:
            raise UpstreamInvalid(f"the peer's bytes are not blob {self._digest}")


CHUNK = 1024 * 1024


class GeoBlobStore(BlobStore):
    """This site's blob store, which also serves the blobs its geo peers' events named
    and that the fetcher has not brought yet (``site status``'s backlog): read through
    the single-flight spool from a peer that holds them, stored here as they pass, so
    a pull never meets a missing blob, and a manifest shipped ahead of its blobs pulls.
    ``exists`` stays this site's own answer (uploads and the fetcher ask it)."""

    def __init__(
        self,
        base: BlobStore,
        backlog: SQLBlobBacklog,
        feeds: Callable[[], dict[str, PeerFeed]],
        spool: Any,
    ) -> None:
        self.base = base
        self.backlog = backlog
        self.feeds = feeds
        self.spool = spool  # adapters.spool.SpoolDir

    def stat(self, digest: Digest) -> int:
        try:
            return self.base.stat(digest)
        except BlobUnknown:
            wanted = self.backlog.get(str(digest))
            if wanted is None:
                raise
            return wanted.size

    def exists(self, digest: Digest) -> bool:
        return self.base.exists(digest)

    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        if self.base.exists(digest):
            return self.base.read(digest, offset, length)
        wanted = self.backlog.get(str(digest))
        if wanted is None:
            return self.base.read(digest, offset, length)  # raises BlobUnknown
        return self._from_peers(digest, wanted, offset, length)

    def _from_peers(
        self, digest: Digest, wanted: Wanted, offset: int, length: int | None
    ) -> Iterator[bytes]:
        error: Exception = BlobUnknown(f"blob {digest} is at no peer reachable now")
        for feed in _ordered(self.feeds(), wanted.site_id):

            def commit(source: Any, size: int) -> None:
                self.base.put(source, expected=digest, expected_size=size)
                self.backlog.done(str(digest))

            try:
                spooled = self.spool.fetch(
                    digest,
                    lambda feed=feed: _PeerBlob(feed, digest, wanted.size),
                    commit,
                    lambda: self.base.exists(digest),
                )
            except (PeerError, UpstreamError) as e:
                error = e
                continue
            if spooled is None:
                return self.base.read(digest, offset, length)
            return _window(spooled[1], offset, length)
        log.warning("geo blob %s: %s", digest, error)
        raise UpstreamUnreachable(f"blob {digest} is not here yet and no peer served it: {error}")

    # -- the rest is the base store's --------------------------------------------------

    def delete(self, digest: Digest) -> bool:
        return self.base.delete(digest)

    def put(
        self, stream: ByteSource, expected: Digest | None = None, expected_size: int | None = None
    ) -> tuple[Digest, int]:
        return self.base.put(stream, expected, expected_size)

    def start_upload(self) -> str:
        return self.base.start_upload()

    def append(
        self, upload_id: str, stream: ByteSource, offset: int, length: int | None = None
    ) -> int:
        return self.base.append(upload_id, stream, offset, length)

    def truncate_upload(self, upload_id: str, size: int) -> None:
        self.base.truncate_upload(upload_id, size)

    def upload_size(self, upload_id: str) -> int:
        return self.base.upload_size(upload_id)

    def commit(self, upload_id: str, expected: Digest, expected_size: int | None = None) -> int:
        return self.base.commit(upload_id, expected, expected_size)

    def cancel(self, upload_id: str) -> None:
        self.base.cancel(upload_id)

    def uploads(self) -> Iterator[tuple[str, float]]:
        return self.base.uploads()

    def check(self) -> None:
        self.base.check()


def _window(chunks: Iterator[bytes], offset: int, length: int | None) -> Iterator[bytes]:
    """``chunks`` from byte ``offset``, at most ``length`` of them."""
    skip, left = offset, length
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        if skip:
            chunk, skip = chunk[skip:], 0
        if left is not None:
            chunk = chunk[:left]
            left -= len(chunk)
        if chunk:
            yield chunk
        if left == 0:
            return
