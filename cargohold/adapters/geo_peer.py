"""A geo peer's log feed over HTTP: ``GET <peer>/replication/v1/log`` with this site's
``peer_token`` (``http/replication.py`` serves it; ``replay/geo_feed.py`` reads a page).

One ``httpx`` client per peer keeps its connection open between pages. Pages come
gzip-encoded (the client asks, and inflates them). Every failure is one of two
exceptions: ``PeerRefused`` (the peer answered, and will not serve us as things are:
a wrong token, an unknown path) or ``PeerUnreachable`` (no answer, a timeout, a 5xx).
The replicator waits and retries the second; the first needs an operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

#: The feed's media type (``replay/geo_feed.MEDIA_TYPE``; adapters do not import replay).
FEED_MEDIA_TYPE = "application/vnd.cargohold.log.v1+msgpack"
#: The largest page accepted, inflated: the feed cuts pages at 4 MiB of frames, and one
#: event may be bigger than that (a page holds at least one).
MAX_PAGE_BYTES = 80 * 1024 * 1024
#: How long a connection to a peer may take to open, and a read on it to wait. A peer
#: answers a page as soon as it has read it from its log, so a wait longer than that is
#: a link cut or a peer stalled: failing early lets the replicator retry on a new
#: connection, which is what finds a healed link (one left hanging would sit in TCP's
#: retransmission backoff for seconds after the link is back).
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
#: Blob bytes as they are read off the wire.
CHUNK_BYTES = 1024 * 1024


class PeerError(Exception):
    """The peer's log could not be read; the message says why, for ``site status``."""


class PeerRefused(PeerError):
    """The peer answered and refused (its answer's status in the message)."""


class PeerUnreachable(PeerError):
    """No usable answer: connection refused or cut, a timeout, or a server error."""


class BlobMissing(PeerError):
    """The peer answered that it does not hold the blob (yet)."""


class PeerFeed:
    """Reads pages of the log of the peer at ``base_url`` (``http(s)://host:port``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = READ_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": FEED_MEDIA_TYPE,
                "Accept-Encoding": "gzip",
                "User-Agent": "cargohold-replicator",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def page(self, after: int, limit: int) -> bytes:
        """The bytes of the page after position ``after`` (at most ``limit`` events)."""
        try:
            with self._client.stream(
                "GET", "/replication/v1/log", params={"after": after, "limit": limit}
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._failure(response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise PeerRefused(
                            f"{self.base_url} sent a page over {MAX_PAGE_BYTES} bytes"
                        )
                return bytes(body)
        except httpx.HTTPError as e:
            raise PeerUnreachable(f"{self.base_url}: {type(e).__name__}: {e}") from None

    @contextmanager
    def blob(self, digest: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        """The bytes of blob ``digest`` from ``offset`` on, as chunks, while the block
        runs. Raises ``PeerError``; ``BlobMissing`` when the peer does not hold it."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream(
                "GET", f"/replication/v1/blobs/{digest}", headers=headers
            ) as response:
                if response.status_code == 404:
                    raise BlobMissing(f"{self.base_url} does not hold blob {digest}")
                if response.status_code not in (200, 206) or (
                    offset and response.status_code != 206
                ):
                    response.read()
                    raise self._failure(response)
                yield self._chunks(response)
        except httpx.HTTPError as e:
            raise PeerUnreachable(f"{self.base_url}: {type(e).__name__}: {e}") from None

    def _chunks(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_raw(CHUNK_BYTES)
        except httpx.HTTPError as e:
            raise PeerUnreachable(f"{self.base_url}: cut: {type(e).__name__}: {e}") from None

    def _failure(self, response: httpx.Response) -> PeerError:
        what = f"{self.base_url} answered {response.status_code}"
        if response.status_code == 401:
            return PeerRefused(f"{what}: it does not accept this site's peer_token")
        if response.status_code == 404:
            return PeerRefused(f"{what}: it serves no log (its peer_token is not set?)")
        if response.status_code >= 500 or response.status_code == 429:
            return PeerUnreachable(what)
        return PeerRefused(what)
