"""The pull-through cache's parts: its settings and upstream paths, the ``ProxyCache``
aggregate's rules, and the single-flight spool (``adapters/spool.py``) against an
in-memory upstream blob."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO

import pytest

from cargohold.adapters.spool import SpoolDir
from cargohold.bootstrap import bootstrap
from cargohold.config import load_settings
from cargohold.domain.clock import HLCTimestamp
from cargohold.domain.context import EventContext
from cargohold.domain.errors import InvalidInput, UpstreamUnreachable
from cargohold.domain.proxy_cache import (
    ProxyCache,
    ProxyCacheExists,
    ProxyCacheSettings,
    ProxyCacheUnknown,
)
from cargohold.domain.upstream import DOCKER_HUB, UpstreamBlob
from cargohold.domain.values import Actor, Digest, RepositoryName

SITE = uuid.UUID(int=7)


def _ctx(ms: int = 1_000) -> EventContext:
    return EventContext(Actor.system(), SITE, HLCTimestamp(ms, 0), "t")


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "local", "host", "path"),
    [
        ("docker.io", "hub/alpine", DOCKER_HUB, "library/alpine"),
        ("docker.io", "hub/bitnami/redis", DOCKER_HUB, "bitnami/redis"),
        ("quay.io/prometheus", "q/node-exporter", "quay.io", "prometheus/node-exporter"),
        ("https://127.0.0.1:5000/", "c/team/app", "127.0.0.1:5000", "team/app"),
        ("localhost:5000", "c/app", "localhost:5000", "app"),
    ],
)
def test_a_cached_name_maps_to_the_upstreams(
    upstream: str, local: str, host: str, path: str
) -> None:
    settings = ProxyCacheSettings(upstream)
    settings.check()
    assert settings.host == host
    assert settings.upstream_path(RepositoryName(local)) == path


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (ProxyCacheSettings("not a host"), "upstream_registry"),
        (ProxyCacheSettings("quay.io/Bad_Prefix!"), "upstream_registry"),
        (ProxyCacheSettings("quay.io", None, b"sealed"), "username"),
        (ProxyCacheSettings("quay.io", expiration_s=0), "expiration_s"),
        (ProxyCacheSettings("quay.io", expiration_s=10**12), "expiration_s"),
    ],
)
def test_settings_an_operator_may_not_set_are_refused(
    settings: ProxyCacheSettings, field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        settings.check()


# -- the aggregate ---------------------------------------------------------------------


def test_one_configuration_at_a_time_and_one_event_per_outage() -> None:
    cache = ProxyCache.create("hub", _ctx())
    with pytest.raises(ProxyCacheUnknown):
        cache.remove(_ctx())
    cache.upstream_failed("down", _ctx())  # not configured: nothing to record
    cache.configure(ProxyCacheSettings("docker.io"), _ctx())
    with pytest.raises(ProxyCacheExists):
        cache.configure(ProxyCacheSettings("quay.io"), _ctx())
    cache.upstream_recovered(_ctx())  # not failing: nothing to record
    cache.upstream_failed("unreachable", _ctx(2_000))
    cache.upstream_failed("unreachable", _ctx(3_000))
    cache.upstream_failed("rate-limiting", _ctx(4_000))
    assert cache.failing == "rate-limiting" and cache.failing_since_ms == 2_000
    cache.upstream_recovered(_ctx(5_000))
    cache.upstream_recovered(_ctx(6_000))
    kinds = [type(e).__name__ for e in cache.collect_events()]
    assert kinds == [
        "Created",
        "Configured",
        "UpstreamFailed",
        "UpstreamFailed",
        "UpstreamRecovered",
    ]
    assert cache.failing is None and cache.failing_since_ms is None
    cache.remove(_ctx())
    assert cache.settings is None
    cache.configure(ProxyCacheSettings("quay.io"), _ctx())  # a new configuration after it
    assert cache.settings is not None and cache.settings.host == "quay.io"


# -- the spool ---------------------------------------------------------------------------

DATA = bytes(range(256)) * 4096 * 3  # 3 MiB
DIGEST = Digest.parse("sha256:" + hashlib.sha256(DATA).hexdigest())


class _Upstream:
    """An upstream blob in memory, sent in 64 KiB pieces with a pause between them; it
    breaks off after ``break_after`` bytes when set."""

    def __init__(self, pause: float = 0.002, break_after: int | None = None) -> None:
        self.pause = pause
        self.break_after = break_after
        self.opened = 0
        self._lock = threading.Lock()

    @contextmanager
    def open(self) -> Iterator[UpstreamBlob]:
        with self._lock:
            self.opened += 1
        yield UpstreamBlob(len(DATA), self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(DATA), 65536):
            if self.break_after is not None and start >= self.break_after:
                raise UpstreamUnreachable("the connection broke")
            time.sleep(self.pause)
            yield DATA[start : start + 65536]


class _Store:
    def __init__(self) -> None:
        self.blobs: dict[Digest, bytes] = {}
        self.commits = 0

    def commit(self, source: BinaryIO, size: int) -> None:
        data = source.read()
        assert len(data) == size
        self.commits += 1
        self.blobs[DIGEST] = data

    def stored(self) -> bool:
        return DIGEST in self.blobs


def _read(spool: SpoolDir, upstream: _Upstream, store: _Store) -> bytes:
    got = spool.fetch(DIGEST, upstream.open, store.commit, store.stored)
    if got is None:
        return store.blobs[DIGEST]
    size, chunks = got
    data = b"".join(chunks)
    assert len(data) == size
    return data


def _wait_for(predicate: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_eight_readers_at_once_fetch_once_and_all_get_the_bytes(tmp_path: Path) -> None:
    spool, upstream, store = SpoolDir(tmp_path), _Upstream(), _Store()
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(_read(spool, upstream, store)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [DATA] * 8
    assert upstream.opened == 1
    _wait_for(lambda: store.commits == 1)
    assert store.commits == 1 and store.blobs[DIGEST] == DATA
    _wait_for(lambda: not list(tmp_path.iterdir()))
    assert not list(tmp_path.iterdir())  # no spool file left behind


def test_a_fetch_that_breaks_off_commits_nothing_and_the_next_one_starts_over(
    tmp_path: Path,
) -> None:
    spool, store = SpoolDir(tmp_path), _Store()
    broken = _Upstream(break_after=1024 * 1024)
    with pytest.raises(UpstreamUnreachable, match="broke off"):
        _read(spool, broken, store)
    assert store.commits == 0
    assert _read(spool, _Upstream(pause=0), store) == DATA
    _wait_for(lambda: store.commits == 1)
    assert store.commits == 1


def test_a_dead_leaders_leftovers_do_not_stop_the_next_fetch(tmp_path: Path) -> None:
    base = tmp_path / f"sha256-{DIGEST.hex}"
    (tmp_path / f"{base.name}.part").write_bytes(DATA[:1000])
    (tmp_path / f"{base.name}.size").write_text(str(len(DATA)))
    (tmp_path / f"{base.name}.lock").write_bytes(b"")  # nobody holds it
    spool, upstream, store = SpoolDir(tmp_path), _Upstream(pause=0), _Store()
    assert _read(spool, upstream, store) == DATA
    assert upstream.opened == 1


def test_a_blob_in_the_store_is_not_fetched(tmp_path: Path) -> None:
    spool, upstream, store = SpoolDir(tmp_path), _Upstream(), _Store()
    store.blobs[DIGEST] = DATA
    assert spool.fetch(DIGEST, upstream.open, store.commit, store.stored) is None
    assert upstream.opened == 0


def test_a_leader_whose_fetch_fails_at_once_reports_it_not_a_missing_blob(
    tmp_path: Path,
) -> None:
    """The copier may fail and remove its file before the leader's client reads it: the
    leader's reader was opened first, so the client sees the break, never "not here"."""
    spool, store = SpoolDir(tmp_path), _Store()
    for _ in range(20):
        got = spool.fetch(
            DIGEST, _Upstream(pause=0, break_after=0).open, store.commit, store.stored
        )
        assert got is not None
        with pytest.raises(UpstreamUnreachable, match="broke off after 0"):
            b"".join(got[1])
    assert store.commits == 0


def test_a_cache_stream_past_its_snapshot_interval_saves_and_loads(tmp_path: Path) -> None:
    """Its state is snapshotted like every aggregate's: only values the transcoder knows
    (a busy upstream flapping between failing and recovered reaches the interval)."""
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path, "snapshot_interval": 3})
    c = bootstrap(settings)
    try:
        ctx = partial(EventContext, Actor.system(), c.site_id, request_id="t")
        cache = ProxyCache.create("hub", ctx(HLCTimestamp(1_000, 0)))
        cache.configure(
            ProxyCacheSettings("docker.io", expiration_s=60), ctx(HLCTimestamp(1_001, 0))
        )
        for i in range(6):
            cache.upstream_failed(f"outage {i}", ctx(HLCTimestamp(1_002 + i, 0)))
        c.log.save(cache)
        loaded = c.log.repository.get(cache.id)
        assert loaded.settings == ProxyCacheSettings("docker.io", expiration_s=60)
        assert loaded.failing == "outage 5" and loaded.failing_since_ms == 1_002
        assert c.log.snapshots is not None and list(c.log.snapshots.get(cache.id))
    finally:
        c.close()
