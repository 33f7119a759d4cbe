"""The replicator (``replay/geo_replicator.py``, ``geo_store.py``) between real sites:
each a container with its own log and views, each peer's feed its real HTTP app (the
WSGI app in process: ``httpx.WSGITransport``).

Shown: three sites in a line (A-B-C, no A-C link) converge, because a site's feed
forwards what it received; nothing loops back to its origin or lands twice; a replicator
stopped between pages resumes where it stood; two replicators storing the same page
store it once; a refused token or an event of an unknown kind stores nothing and is
reported.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from cargohold.adapters.geo_peer import PeerFeed, PeerRefused
from cargohold.adapters.spool import SpoolDir
from cargohold.bootstrap import Container, bootstrap
from cargohold.commands.unit_of_work import MAX_CLOCK_AHEAD_MS
from cargohold.domain.errors import BlobUnknown, RepositoryExists, RepositoryUnknown, TagUnknown
from cargohold.domain.identity import AccountName
from cargohold.domain.values import Digest, RepositoryName, Tag
from cargohold.http.app import create_app
from cargohold.projections.audit.queries import LogFilter
from cargohold.projections.origins import StreamOrigins
from cargohold.replay import geo_feed
from cargohold.replay.geo_blobs import BlobFetcher, GeoBlobStore, GeoRedirects, queue_missing
from cargohold.replay.geo_feed import FeedError
from cargohold.replay.geo_replicator import Replicator
from cargohold.replay.geo_status import SiteStatus
from cargohold.replay.geo_store import PageRaced, shipped_position, store_page
from tests.factories import ALICE, push_image, settings_for
from tests.geo import site_views, until
from tests.operations import verify

TOKEN = "geo-peers-share-this-secret"
APP = RepositoryName("acme/app")


@pytest.fixture
def sites(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[dict[str, Container]]:
    """A, B and C; B (the middle of the line) on this test's backend."""
    opened: dict[str, Container] = {}
    try:
        for name in "abc":
            kind = backend if name == "b" else "sqlite"
            settings = settings_for(
                request, kind, tmp_path / name, peer_token=TOKEN, site_name=f"site-{name}"
            )
            opened[name] = bootstrap(settings)
        yield opened
    finally:
        for container in opened.values():
            container.close()


def feed_of(peer: Container, token: str = TOKEN) -> PeerFeed:
    return PeerFeed(
        f"http://{peer.settings.site_name}.test",
        token,
        transport=httpx.WSGITransport(app=create_app(peer)),
    )


def replicator(here: Container, peer: Container, **options: Any) -> Replicator:
    return Replicator(
        feed_of(peer, options.pop("token", TOKEN)),
        here.log,
        here.site_id,
        here.runner,
        here.registry.clock,
        here.peer_links,
        max_clock_ahead_ms=MAX_CLOCK_AHEAD_MS,
        **options,
    )


def drain(*replicators: Replicator) -> int:
    """Step every replicator until a whole round stores nothing; events stored."""
    total = 0
    while True:
        before = sum(r.link.events_stored for r in replicators)
        for r in replicators:
            while r.step():
                pass
        stored = sum(r.link.events_stored for r in replicators) - before
        total += stored
        if not stored:
            return total


def event_count(c: Container) -> int:
    return int(c.log.recorder.max_notification_id() or 0)


def test_three_sites_in_a_line_converge_through_the_middle(sites: dict[str, Container]) -> None:
    a, b, c = sites["a"], sites["b"], sites["c"]
    push_image(a, "acme/app", "from-a", seed="a")
    # NOTE: another namespace: until commands decide on the merged state, a name (or a
    # namespace) that holds another site's streams is read-only (docs/geo-replication.md).
    push_image(c, "other/tool", "from-c", seed="c")
    written = event_count(a) + event_count(c)
    links = [replicator(b, a), replicator(b, c), replicator(a, b), replicator(c, b)]
    assert drain(*links) == 2 * written  # B stores both; A gets C's, C gets A's, via B
    for site in (a, b, c):
        assert event_count(site) == written  # nothing twice, nothing looped back
        assert site.queries.catalog() == ["acme/app", "other/tool"]
        assert verify(site, quiet=True).differences == ()
    assert site_views(a.views_db) == site_views(b.views_db) == site_views(c.views_db)
    # A's own events came back to it through B, and were dropped as its own.
    a_from_b = links[2]
    assert a_from_b.link.state == "caught-up"
    assert a_from_b.link.site_name == "site-b"
    assert a_from_b.link.position == event_count(b)
    # More writes on both ends travel the line again.
    push_image(a, "acme/app", "again", seed="a2")
    push_image(c, "other/tool", "again", seed="c2")
    drain(*links)
    for site in (a, b, c):
        assert site.queries.tags(APP) == ["again", "from-a"]
    assert site_views(a.views_db) == site_views(c.views_db)


def test_a_replicator_stopped_between_pages_resumes_where_it_stood(
    sites: dict[str, Container],
) -> None:
    a, b = sites["a"], sites["b"]
    for i in range(4):
        push_image(a, "acme/app", f"t{i}", seed=str(i))
    first = replicator(b, a, limit=3)
    assert first.step() and first.step()  # two pages of three, then "killed"
    stored = event_count(b)
    assert stored == 6 and shipped_position(b.log, a.site_id) == 6
    second = replicator(b, a, limit=3)  # a new process: it knows only the log
    while second.step():
        pass
    assert event_count(b) == event_count(a)
    assert second.link.position == event_count(a)
    assert b.queries.tags(APP) == ["t0", "t1", "t2", "t3"]
    assert verify(b, quiet=True).differences == ()


def test_two_replicators_storing_one_page_store_it_once(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "latest")
    page = geo_feed.read_page(geo_feed.write_page(a.log, a.site_id, 0, 100))
    checks = replicator(b, a)._checks
    store_page(b.log, b.site_id, page, 0, checks)
    with pytest.raises(PageRaced) as raced:
        store_page(b.log, b.site_id, page, 0, checks)
    assert raced.value.position == page.through
    assert event_count(b) == event_count(a)


def test_a_wrong_token_is_refused_and_reported(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "latest")
    wrong = replicator(b, a, token="not-the-shared-secret")
    with pytest.raises(PeerRefused, match="401"):
        wrong.step()
    assert event_count(b) == 0


def test_a_page_with_an_unknown_kind_of_event_stores_nothing(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "latest")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(geo_feed.write_page(a.log, a.site_id, 0, 100))
    frames = list(unpacker)
    frames[2][4] = "cargohold.domain.future:Repository.Teleported"  # the second event
    body = b"".join(msgpack.packb(f, use_bin_type=True) for f in frames[:-1])
    frames[-1][1]["sha256"] = hashlib.sha256(body).hexdigest()
    forged = geo_feed.read_page(body + msgpack.packb(frames[-1], use_bin_type=True))
    with pytest.raises(FeedError, match="does not know"):
        store_page(b.log, b.site_id, forged, 0, replicator(b, a)._checks)
    assert event_count(b) == 0 and shipped_position(b.log, a.site_id) == 0


def test_the_later_untag_wins_at_both_sites(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "latest", seed="a")
    push_image(b, "acme/app", "latest", seed="b")
    b.registry.untag(APP, Tag("latest"), ALICE)
    drain(replicator(a, b), replicator(b, a))
    for site in (a, b):
        assert site.queries.tags(APP) == []
    assert site_views(a.views_db) == site_views(b.views_db)


def _until(condition: Any, timeout: float = 20.0) -> None:
    until(condition, timeout, 0.02, "the condition did not hold in time")


def _recorded(site: Container, url: str) -> tuple[str, str | None, int]:
    [link] = site.peer_links.links((url,))
    return (link.state, link.site_id, link.position)


def test_one_replicator_per_peer_holds_the_lease_and_another_takes_over(
    sites: dict[str, Container],
) -> None:
    """Two workers each run a replicator of the same peer: one reads, the other waits;
    when the first stops, the second goes on from the tracked position."""
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "one", seed="1")
    first, second = replicator(b, a, interval=0.05), replicator(b, a, interval=0.05)
    stop_first, stop_second = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=first.run, args=(stop_first,)),
        threading.Thread(target=second.run, args=(stop_second,)),
    ]
    try:
        threads[0].start()
        _until(lambda: first.link.state == "caught-up")
        threads[1].start()
        push_image(a, "acme/app", "two", seed="2")
        _until(lambda: b.queries.tags(APP) == ["one", "two"])
        # the link row is written after the step that stored the events: wait for it
        _until(lambda: _recorded(b, first.url) == ("caught-up", str(a.site_id), event_count(a)))
        assert second.link.events_stored == 0  # it never held the lease
        stop_first.set()
        threads[0].join(10)
        push_image(a, "acme/app", "three", seed="3")
        _until(lambda: b.queries.tags(APP) == ["one", "three", "two"])
        assert second.link.events_stored > 0
    finally:
        stop_first.set()
        stop_second.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(10)
    assert event_count(b) == event_count(a)


def test_an_account_created_at_two_sites_stops_replication_not_the_views(
    sites: dict[str, Container],
) -> None:
    """Accounts are not folded across sites yet: the page that brings a second stream
    of one account name is refused whole, and the views go on."""
    a, b = sites["a"], sites["b"]
    for site in (a, b):
        site.identity.create_user(AccountName("alice"), "", "pw-0123456789", ALICE)
    push_image(a, "acme/app", "latest")
    before = event_count(b)
    link = replicator(b, a, names=StreamOrigins(b.views_db, b.site_id))
    with pytest.raises(FeedError, match=r"(account|namespace) alice, which this site holds"):
        link.step()
    assert event_count(b) == before and shipped_position(b.log, a.site_id) == 0
    push_image(b, "other/tool", "latest")  # the views still follow this site's log
    assert b.queries.tags(RepositoryName("other/tool")) == ["latest"]


def test_the_sites_status_reports_each_peer(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    push_image(a, "acme/app", "latest")
    link = replicator(b, a)
    drain(link)
    b.peer_links.claim(link.url, link.owner, 0, 10_000)
    b.peer_links.record(link.link, link.owner)
    shown = SiteStatus(
        b.log,
        b.runner,
        b.site_id,
        "site-b",
        (link.url, "http://never.test"),
        b.peer_links,
        b.blob_backlog,
    ).status()
    assert shown["site"]["site_name"] == "site-b"
    seen, never = shown["peers"]
    assert (seen["site_id"], seen["site_name"], seen["state"]) == (
        str(a.site_id),
        "site-a",
        "caught-up",
    )
    assert seen["position"] == seen["head"] == event_count(a) and seen["lag_events"] == 0
    assert seen["events_stored"] == event_count(a) and seen["lag_seconds"] is not None
    assert (never["state"], never["site_id"], never["lag_seconds"]) == ("starting", None, None)
    assert seen["blob_backlog"] == {"blobs": 0, "bytes": 0}  # no blob was queued here


# -- blobs -----------------------------------------------------------------------------


def _backlogged(b: Container, a: Container) -> tuple[Any, dict[str, bytes]]:
    """A's image replicated into B (its blobs queued, not fetched); A's blob bytes."""
    image = push_image(a, "acme/app", "latest", seed="blobs")
    drain(replicator(b, a, wanted=queue_missing(b.blobs, b.blob_backlog)))
    digests = [image.digest, image.config, *image.layers]
    return image, {str(d): b"".join(a.blobs.read(d)) for d in digests}


def test_a_peers_blobs_are_queued_then_fetched_by_digest(sites: dict[str, Container]) -> None:
    a, b = sites["a"], sites["b"]
    _, wanted = _backlogged(b, a)
    assert b.blob_backlog.summary() == {str(a.site_id): (3, sum(len(v) for v in wanted.values()))}
    assert not any(b.blobs.exists(Digest.parse(d)) for d in wanted)
    fetcher = BlobFetcher(
        b.blobs, b.blob_backlog, lambda: {str(a.site_id): feed_of(a)}, "test", parallel=2
    )
    assert fetcher.fetch_due() == 3
    for digest, data in wanted.items():
        assert b"".join(b.blobs.read(Digest.parse(digest))) == data
    assert b.blob_backlog.summary() == {} and fetcher.fetch_due() == 0


def test_a_blob_a_peer_holds_is_served_through_it_and_stored(
    sites: dict[str, Container], tmp_path: Path
) -> None:
    """A pull that meets a blob not fetched yet (the manifest's own bytes included) is
    served from the peer, and the blob is here afterwards."""
    a, b = sites["a"], sites["b"]
    image, wanted = _backlogged(b, a)
    geo = GeoBlobStore(
        b.blobs, b.blob_backlog, lambda: {str(a.site_id): feed_of(a)}, SpoolDir(tmp_path / "s")
    )
    layer = str(image.layers[0])
    assert geo.stat(image.layers[0]) == len(wanted[layer])
    assert b"".join(geo.read(image.layers[0], 10, 100)) == wanted[layer][10:110]
    # Stored as it passed, by the spool's copier (which may finish after the reader).
    _until(lambda: b.blobs.exists(image.layers[0]))
    assert b"".join(geo.read(image.digest)) == wanted[str(image.digest)]
    _until(lambda: b.blob_backlog.get(str(image.digest)) is None)
    unknown = Digest.of(b"nobody has this")
    with pytest.raises(BlobUnknown):
        geo.stat(unknown)


def test_a_blob_a_peer_holds_can_be_a_redirect_to_its_signed_url(
    sites: dict[str, Container],
) -> None:
    a, b = sites["a"], sites["b"]
    image, wanted = _backlogged(b, a)

    class Sites:
        def sites(self) -> dict[str, str]:
            return {str(a.site_id): "http://site-a.test"}

    redirects = GeoRedirects(b.blobs, b.blob_backlog, Sites(), TOKEN)  # type: ignore[arg-type]
    url = redirects.redirect(image.layers[0])
    assert url is not None and url.startswith("http://site-a.test/replication/v1/blobs/")
    with httpx.Client(transport=httpx.WSGITransport(app=create_app(a))) as client:
        r = client.get(url)
        assert r.status_code == 200 and r.content == wanted[str(image.layers[0])]
        r = client.get(url, headers={"Range": "bytes=5-9"})
        assert r.status_code == 206 and r.content == wanted[str(image.layers[0])][5:10]
        assert client.get(url.replace("signature=", "signature=0")).status_code == 401
        expired = GeoRedirects(b.blobs, b.blob_backlog, Sites(), TOKEN, ttl_s=-10)  # type: ignore[arg-type]
        assert client.get(str(expired.redirect(image.layers[0]))).status_code == 401
        bare = url.split("?")[0]
        assert client.get(bare).status_code == 401  # neither a signature nor the token
        assert client.get(bare, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    b.blobs.put(io.BytesIO(wanted[str(image.layers[0])]), expected=image.layers[0])
    assert redirects.redirect(image.layers[0]) is None  # here now: served here


@pytest.fixture
def peers(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[tuple[Container, Container]]:
    """A and B configured as each other's geo peers; B on this test's backend."""
    opened: list[Container] = []
    try:
        for name, other, kind in (("a", "b", "sqlite"), ("b", "a", backend)):
            settings = settings_for(
                request,
                kind,
                tmp_path / name,
                peer_token=TOKEN,
                site_name=f"site-{name}",
                peers=f"http://site-{other}.test",
            )
            opened.append(bootstrap(settings))
        yield opened[0], opened[1]
    finally:
        for container in opened:
            container.close()


def test_every_name_is_writable_at_every_site_deciding_on_the_merged_state(
    peers: tuple[Container, Container],
) -> None:
    """A changes what only B wrote (untags B's tag, deletes B's manifest, moves B's
    tag), through its own stream of the name; both sites then agree, and replay clean."""
    a, b = peers
    from_b = push_image(b, "acme/app", "latest", seed="b")
    push_image(b, "acme/app", "b-only", seed="b2")
    old = push_image(b, "acme/app", "old", seed="b3")
    drain(replicator(a, b))
    assert a.queries.tags(APP) == ["b-only", "latest", "old"]
    with pytest.raises(RepositoryExists):
        a.registry.create_repository(APP, ALICE)
    a.registry.untag(APP, Tag("b-only"), ALICE)
    a.registry.delete_manifest(APP, old.digest, ALICE)
    from_a = push_image(a, "acme/app", "latest", seed="a")
    assert a.queries.resolve_tag(APP, Tag("latest")) == from_a.digest
    with pytest.raises(TagUnknown):  # gone at A, whichever site made it
        a.registry.untag(APP, Tag("old"), ALICE)
    drain(replicator(a, b), replicator(b, a))
    for site in (a, b):
        assert site.queries.tags(APP) == ["latest"]
        assert site.queries.resolve_tag(APP, Tag("latest")) == from_a.digest
        assert site.queries.manifest(APP, old.digest) is None
        assert site.queries.manifest(APP, from_b.digest) is not None
        assert verify(site, quiet=True).differences == ()
    assert site_views(a.views_db) == site_views(b.views_db)
    # Each audit entry names the site its change was made at, the same at both.
    everything = LogFilter(0, 2**62, repository=str(APP))
    origins = {(e.kind, e.site_id) for e in a.audit_queries.iterate(everything)}
    assert origins == {(e.kind, e.site_id) for e in b.audit_queries.iterate(everything)}
    assert ("delete_tag", str(a.site_id)) in origins and ("create_tag", str(b.site_id)) in origins
    # B, having heard of all of it, decides on it too: A's tag is B's to delete.
    b.registry.untag(APP, Tag("latest"), ALICE)
    drain(replicator(a, b))
    assert a.queries.tags(APP) == [] and b.queries.tags(APP) == []


def test_a_name_deleted_at_one_site_is_pushed_to_again_at_the_other(
    peers: tuple[Container, Container],
) -> None:
    a, b = peers
    push_image(a, "acme/app", "latest", seed="a")
    drain(replicator(b, a))
    b.registry.delete_repository(APP, ALICE)
    drain(replicator(a, b))
    assert a.queries.catalog() == []
    with pytest.raises(RepositoryUnknown):  # deleted everywhere it is known
        a.registry.untag(APP, Tag("latest"), ALICE)
    again = push_image(a, "acme/app", "again", seed="a2")
    drain(replicator(b, a))
    for site in (a, b):
        assert site.queries.tags(APP) == ["again"]
        assert site.queries.resolve_tag(APP, Tag("again")) == again.digest
    assert site_views(a.views_db) == site_views(b.views_db)


def test_pages_are_read_ahead_and_the_views_fold_in_the_projections_thread(
    sites: dict[str, Container],
) -> None:
    """Small pages, each asked for while the one before is stored, land once each, in
    order; the views, told by ``nudge``, fold them in the poller's thread long before
    its own interval (a minute) would have."""
    a, b = sites["a"], sites["b"]
    for tag in ("one", "two", "three"):
        push_image(a, "acme/app", tag, seed=tag)
    b.runner.start(interval=60)
    try:
        link = replicator(b, a, fold=b.runner.nudge, limit=2)
        steps = 1
        while link.step():
            steps += 1
        assert steps == -(-event_count(a) // 2)  # every page read once, none twice
        assert event_count(b) == event_count(a)
        _until(lambda: b.queries.tags(APP) == ["one", "three", "two"], timeout=10)
    finally:
        b.runner.stop()
    assert site_views(a.views_db) == site_views(b.views_db)


def test_a_backlog_is_left_to_other_workers_folds_until_it_is_stored(
    sites: dict[str, Container],
) -> None:
    """With ``fold_elsewhere`` (several workers), this process's poller is held while the
    peer is ahead, whatever its interval; the page that catches up folds here at once."""
    a, b = sites["a"], sites["b"]
    for tag in ("one", "two", "three"):
        push_image(a, "acme/app", tag, seed=tag)
    b.runner.start(interval=0.02)
    try:
        link = replicator(b, a, fold=b.runner.nudge, limit=2, fold_elsewhere=True)
        before = b.runner.position()
        assert link.step()  # the peer is ahead: stored, and left to the others to fold
        time.sleep(0.3)  # fifteen of the poller's intervals
        assert b.runner.position() == before and event_count(b) > before
        while link.step():
            pass
        _until(lambda: b.queries.tags(APP) == ["one", "three", "two"], timeout=10)
    finally:
        b.runner.stop()
