"""The replicator: one per geo peer, inside ``serve``, pulling the peer's log into this
site's (``docs/geo-replication.md``, "Shipping").

Each step reads the page after the position this site has taken from the peer (the
log's tracking row), stores what it lacks with the new position in one transaction
(``geo_store``), moves this site's clock past the stamps it met, and has the views catch
up (``fold``; they fold the peer's events as any other: ``projections/merge.py``). While
the peer is ahead, steps follow each other at once; once caught up, the replicator
polls every ``interval`` seconds.

PERF: while a page is stored, the next one is already asked for (the peer builds it
meanwhile, in its own process). In ``serve`` the views fold in the projection's own
thread (``ProjectionRunner.nudge``), never in the replicator's. With several workers,
while the peer is ahead (a backlog: a new site, a healed link) this process's poller is
held (``ProjectionRunner.hold``) and the other workers' pollers fold what is stored, so
storing keeps this process's CPU to itself and is not slowed to the speed of folding
(``docs/benchmarks-geo.md``). Once caught up, this process folds at once again: that is
what keeps a push at the peer quickly pullable here.

- **One per peer per site.** Every worker and node of ``serve`` starts one per
  configured peer. Only the holder of the peer's lease (``peer_links``, renewed each
  step) reads; the others wait, and one of them takes over within ``LEASE_MS`` when the
  holder dies. Even two holders at once would not store anything twice: a page lands
  with its tracking row or not at all.
- **Failures.** An unreachable peer is retried with backoff (up to ``MAX_BACKOFF_S``);
  a refusal (a wrong ``peer_token``) and a page that cannot be stored here (an event of
  a kind this version does not know) stop nothing else, are reported in ``peer_links``
  (``site status``), and are retried slowly: an operator's fix takes effect without a
  restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from uuid import UUID

from cargohold.adapters.eventstore import RegistryLog
from cargohold.adapters.geo_peer import PeerError, PeerFeed, PeerRefused
from cargohold.adapters.peer_links import PeerLink, SQLPeerLinks
from cargohold.domain.clock import HybridLogicalClock, system_wall_ms
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay.event_checks import EventChecks
from cargohold.replay.geo_feed import DEFAULT_LIMIT, FeedError, read_page
from cargohold.replay.geo_store import NameOwners, PageRaced, shipped_position, store_page

log = logging.getLogger(__name__)

LEASE_MS = 10_000
#: NOTE: short, so that a healed link is found within about a second: a retry of an
#: unreachable peer is one connection attempt (``geo_peer.CONNECT_TIMEOUT_S``).
MAX_BACKOFF_S = 1.0
#: How long a poller is held while a backlog is stored (renewed by every page stored).
HOLD_S = 2.0
#: How long a refused peer (or a page this site cannot store) waits before a retry.
REFUSED_RETRY_S = 30.0


def lease_owner() -> str:
    """A name for this replicator's process, unique across the site's nodes."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def peers_hold_a_registry(urls: tuple[str, ...], token: str, timeout: float = 3.0) -> bool:
    """Whether any of the peers at ``urls`` answers with a log that holds events: then a
    first start joins their registry (its superuser comes from them) rather than making
    its own ``admin``, which would be a second account of one name."""
    for url in urls:
        feed = PeerFeed(url, token, timeout=timeout)
        try:
            if read_page(feed.page(0, 1)).head > 0:
                return True
        except (PeerError, FeedError):
            continue
        finally:
            feed.close()
    return False


class Replicator:
    """Pulls the log of the peer ``feed`` reads into ``log`` (this site's, ``site_id``)."""

    def __init__(
        self,
        feed: PeerFeed,
        log: RegistryLog,
        site_id: UUID,
        runner: ProjectionRunner,
        clock: HybridLogicalClock,
        links: SQLPeerLinks,
        *,
        max_clock_ahead_ms: int,
        names: NameOwners | None = None,
        wanted: Callable[[list[tuple[str, int]], str], None] | None = None,
        limit: int = DEFAULT_LIMIT,
        interval: float = 0.2,
        owner: str | None = None,
        now_ms: Callable[[], int] = system_wall_ms,
        fold: Callable[[], object] | None = None,
        fold_elsewhere: bool = False,
    ) -> None:
        self.feed = feed
        self.url = feed.base_url
        self.log = log
        self.site_id = site_id
        self.runner = runner
        self.clock = clock
        self.links = links
        self.max_clock_ahead_ms = max_clock_ahead_ms
        self.names = names
        self._wanted = wanted
        self.limit = limit
        self.interval = interval
        self.owner = owner or lease_owner()
        self._now_ms = now_ms
        self._checks = EventChecks(runner.projector.event_classes, log.mapper.transcoder)
        self.link = PeerLink(self.url, None, None, "starting", 0, 0, 0, None, None, None)
        self._peer: UUID | None = None
        # What the views are told after a page is stored: catch up (at once, in this
        # thread, by default) or ``nudge`` the projection's thread.
        self._fold = fold or runner.catch_up
        # Whether other processes fold this site's log (other workers): then a backlog
        # is left to them (the module docstring).
        self.fold_elsewhere = fold_elsewhere
        self._holding = False
        self._ahead: tuple[int, Future[bytes]] | None = None
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="geo-page")

    # -- one step ----------------------------------------------------------------------

    def step(self) -> bool:
        """Read and store one page; whether the peer has more right away. Raises
        ``PeerError`` or ``FeedError``."""
        if self._peer is None:
            # NOTE: where this site stands is tracked under the peer's site id, which
            # only its pages tell: the first read is one event from the start.
            first = read_page(self.feed.page(0, 1))
            self._peer = first.site_id
            position = shipped_position(self.log, first.site_id)
            self.link = replace(
                self.link,
                site_id=str(first.site_id),
                site_name=first.site_name,
                position=position,
            )
        after = self.link.position
        page = read_page(self._page(after))
        if page.through < page.head:
            self._ahead = (
                page.through,
                self._fetcher.submit(self.feed.page, page.through, self.limit),
            )
        now = self._now_ms()
        if page.site_id != self._peer:
            raise FeedError(
                f"{self.url} is now site {page.site_id}, was {self._peer}: "
                "a peer's URL must keep naming one site"
            )
        try:
            peer = str(page.site_id)
            wanted = self._wanted
            on_blobs = None if wanted is None else (lambda refs: wanted(refs, peer))
            stored = store_page(
                self.log, self.site_id, page, after, self._checks, self.names, on_blobs
            )
        except PageRaced as raced:
            self.link = replace(self.link, position=raced.position, contact_ms=now)
            return True
        if stored.latest is not None:
            self.clock.observe(stored.latest, self.max_clock_ahead_ms)
        caught_up = stored.through >= page.head
        if stored.stored and self.fold_elsewhere and not caught_up:
            self.runner.hold(HOLD_S)
            self._holding = True
        elif stored.stored or self._holding:
            self._holding = False
            self._fold()
        self.link = replace(
            self.link,
            site_name=page.site_name,
            state="caught-up" if caught_up else "replicating",
            position=stored.through,
            head=page.head,
            events_stored=self.link.events_stored + stored.stored,
            caught_up_ms=now if caught_up else self.link.caught_up_ms,
            contact_ms=now,
            error=None,
        )
        return not caught_up

    def _page(self, after: int) -> bytes:
        """The page after ``after``: the one asked for ahead if it is that one."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead[0] == after:
                return ahead[1].result()
            ahead[1].cancel()
        return self.feed.page(after, self.limit)

    # -- the loop ----------------------------------------------------------------------

    @property
    def peer_site(self) -> UUID | None:
        """The peer's site id, once a page told it."""
        return self._peer

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop``, holding the peer's lease (module docstring)."""
        backoff = self.interval
        try:
            while not stop.is_set():
                if not self.links.claim(self.url, self.owner, self._now_ms(), LEASE_MS):
                    self._peer = None  # another holds it: re-read our place when ours
                    stop.wait(LEASE_MS / 4000)
                    continue
                wait = self.interval
                try:
                    more = self.step()
                    backoff = self.interval
                    wait = 0.0 if more else self.interval
                except PeerRefused as e:
                    self._failed("refused", str(e))
                    wait = REFUSED_RETRY_S
                except FeedError as e:
                    self._failed("refused", f"a page from {self.url} cannot be stored: {e}")
                    wait = REFUSED_RETRY_S
                except PeerError as e:
                    self._failed("unreachable", str(e))
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    wait = backoff
                except Exception as e:  # NOTE: this site's store failing: retried, logged
                    log.exception("replicating from %s failed", self.url)
                    self._failed("unreachable", f"this site could not store: {e}")
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    wait = backoff
                self.links.record(self.link, self.owner)
                if wait:
                    stop.wait(wait)
        finally:
            self._ahead = None
            self._fetcher.shutdown(wait=True, cancel_futures=True)
            self.links.release(self.url, self.owner)
            self.feed.close()

    def _failed(self, state: str, message: str) -> None:
        if self.link.error != message:
            log.warning("geo peer %s: %s", self.url, message)
        self.link = replace(self.link, state=state, error=message)
