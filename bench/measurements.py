"""What is measured, in what unit, and what we aim for.

A ``Measurement`` is run once per registry per repeat and returns one value per
``Metric`` (a wrk run gives requests/s, p50 and p99 at once). Before its first repeat,
``prepare`` checks on every registry that the answer is right (a fast wrong answer is not
a result) and warms it up. ``RSS_LOAD`` is not run by itself: it is the peak resident
memory sampled during the request loads of each repeat.

The write-side measurements (skopeo, concurrent pushes, read-your-writes, the big push's
RSS) are in ``bench.writes``, the replay rebuild in ``bench.replay``; all are listed in
``MEASUREMENTS`` here, in running order.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.content import Blob, make_blob
from bench.loadgen import Load, LoadResult, run_load
from bench.populate import (
    BIG_REPO,
    IMAGE_REPO,
    TAGS_REPO,
    UPLOAD_REPO,
    Image,
    tag_names,
)
from bench.replay import REPLAY, prepare_replay, replay_rebuild
from bench.servers import BenchError, Registry, RssSampler, tree_rss
from bench.spec import Metric, MiB, Profile, Target
from bench.v2 import MANIFEST_ACCEPT, Client
from bench.writes import (
    CONCURRENT_PUSH,
    HUGE_PUSH_RATE,
    HUGE_PUSH_RSS,
    RYW_METRICS,
    SKOPEO_BIG_METRICS,
    SKOPEO_LAYERS_METRICS,
    concurrent_push,
    huge_push,
    prepare_concurrent_push,
    prepare_huge_push,
    prepare_ryw,
    prepare_skopeo,
    read_your_writes,
    skopeo_big,
    skopeo_layers,
)

__all__ = ["RssSampler"]


@dataclass
class Context:
    profile: Profile
    loader: str
    image: Image
    big: Blob | None
    workers: dict[str, int]  # registry key -> cargohold workers (0: the reference)
    workdir: Path = field(default_factory=Path)  # scratch space of this run
    rss_peaks: dict[tuple[str, int], float] = field(default_factory=dict)
    catalog_sizes: dict[str, int] = field(default_factory=dict)
    # What a measurement builds once per run (an event log, a client pool, ...).
    cache: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[Registry, Context, int], dict[str, float]]
Preparer = Callable[[Registry, Context], None]


def _everywhere(registry: Registry) -> bool:
    return True


@dataclass(frozen=True)
class Measurement:
    """``applies`` picks the registries it runs on (all by default); ``max_repeat`` caps
    its repeats (the slowest: the 4 GiB push, whose every repeat also costs 4 GiB of disk a
    registry, the 512 MiB skopeo copies, the replay);
    ``slow`` marks the ones ``--skip-slow`` leaves out; ``once`` runs it on the first
    registry it applies to only."""

    name: str
    needs: frozenset[str]  # content from bench.populate: image, tags, catalog, big
    metrics: tuple[Metric, ...]
    run: Runner
    prepare: Preparer
    applies: Callable[[Registry], bool] = _everywhere
    max_repeat: int | None = None
    slow: bool = False
    # Run on the first registry it applies to only (a row of one column).
    once: bool = False


# -- request loads ------------------------------------------------------------------------


def _load_for(registry: Registry, method: str, path: str, accept: bool) -> Load:
    headers = (("Accept", MANIFEST_ACCEPT),) if accept else ()
    return Load("127.0.0.1", registry.port, method, path, headers)


def _loader(ctx: Context, method: str) -> str:
    # NOTE: wrk 4.1 (Debian's) waits for a body after a HEAD response and never completes
    # a request: HEAD loads always use the Python load generator.
    return "python" if method == "HEAD" else ctx.loader


def _request_load(
    name: str, title: str, method: str, path: Callable[[Context], str], rate_target: Target
) -> tuple[Runner, tuple[Metric, ...]]:
    metrics = (
        Metric(f"{name}/rate", f"{title}: throughput", "req/s", True, rate_target),
        Metric(f"{name}/p50", f"{title}: p50 latency", "ms", False),
        Metric(
            f"{name}/p99",
            f"{title}: p99 latency",
            "ms",
            False,
            Target("ratio_at_most", 1.0) if name.startswith("manifest") else None,
        ),
    )

    def run(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
        load = _load_for(registry, method, path(ctx), accept=True)
        with RssSampler(registry.pid).running() as sampler:
            result: LoadResult = run_load(
                load,
                connections=ctx.profile.connections,
                duration=ctx.profile.duration,
                loader=_loader(ctx, method),
            )
        key = (registry.key, repeat)
        ctx.rss_peaks[key] = max(ctx.rss_peaks.get(key, 0.0), sampler.peak / MiB)
        return {
            metrics[0].key: result.rate,
            metrics[1].key: result.p50_ms,
            metrics[2].key: result.p99_ms,
        }

    return run, metrics


def _warm(method: str, path: Callable[[Context], str]) -> Preparer:
    def prepare(registry: Registry, ctx: Context) -> None:
        if ctx.profile.warmup > 0:
            run_load(
                _load_for(registry, method, path(ctx), accept=True),
                connections=ctx.profile.connections,
                duration=ctx.profile.warmup,
                loader=_loader(ctx, method),
            )

    return prepare


def _check_manifest(path: Callable[[Context], str]) -> Preparer:
    warm = _warm("GET", path)

    def prepare(registry: Registry, ctx: Context) -> None:
        with Client(registry.url) as client:
            response, body = client.request("GET", path(ctx), headers={"Accept": MANIFEST_ACCEPT})
        if body != ctx.image.manifest:
            raise BenchError(f"{registry.label}: GET {path(ctx)} returned other bytes")
        if response.getheader("Docker-Content-Digest") != ctx.image.digest:
            raise BenchError(f"{registry.label}: GET {path(ctx)}: wrong digest header")
        warm(registry, ctx)

    return prepare


def _check_head(registry: Registry, ctx: Context) -> None:
    path = _blob_head_path(ctx)
    with Client(registry.url) as client:
        response, _ = client.request("HEAD", path)
    if response.getheader("Docker-Content-Digest") != ctx.image.layer:
        raise BenchError(f"{registry.label}: HEAD {path}: wrong digest header")
    _warm("HEAD", _blob_head_path)(registry, ctx)


def _check_tags(registry: Registry, ctx: Context) -> None:
    with Client(registry.url) as client:
        listing, link = client.get_json(_tags_path(ctx))
    expected = tag_names(ctx.profile.tags)
    if sorted(listing.get("tags") or []) != expected or link is not None:
        raise BenchError(
            f"{registry.label}: tags/list gave {len(listing.get('tags') or [])} tags "
            f"(link {link!r}), expected all {len(expected)} in one answer"
        )
    _warm("GET", _tags_path)(registry, ctx)


def _manifest_by_tag_path(ctx: Context) -> str:
    return f"/v2/{IMAGE_REPO}/manifests/latest"


def _manifest_by_digest_path(ctx: Context) -> str:
    return f"/v2/{IMAGE_REPO}/manifests/{ctx.image.digest}"


def _blob_head_path(ctx: Context) -> str:
    return f"/v2/{IMAGE_REPO}/blobs/{ctx.image.layer}"


def _tags_path(ctx: Context) -> str:
    return f"/v2/{TAGS_REPO}/tags/list"


MANIFEST_RATE = Target("ratio_at_least", 1.5, workers2=2.0)
RATE_15 = Target("ratio_at_least", 1.5)

_by_tag, _by_tag_metrics = _request_load(
    "manifest-get-tag", "manifest GET by tag", "GET", _manifest_by_tag_path, MANIFEST_RATE
)
_by_digest, _by_digest_metrics = _request_load(
    "manifest-get-digest",
    "manifest GET by digest",
    "GET",
    _manifest_by_digest_path,
    MANIFEST_RATE,
)
_head, _head_metrics = _request_load("blob-head", "blob HEAD", "HEAD", _blob_head_path, RATE_15)
_tags, _tags_metrics = _request_load("tags-list", "tags/list", "GET", _tags_path, RATE_15)

# -- the catalog --------------------------------------------------------------------------

CATALOG = Metric("catalog/walk", "catalog: full walk", "ms", False)


def _walk_catalog(client: Client, page: int) -> int:
    """Follow the catalog's Link headers from the first page to the last; the count of
    repositories listed."""
    path: str | None = f"/v2/_catalog?n={page}"
    seen = 0
    while path is not None:
        listing, link = client.get_json(path)
        seen += len(listing.get("repositories") or [])
        path = link.split("<", 1)[1].split(">", 1)[0] if link else None
    return seen


def _prepare_catalog(registry: Registry, ctx: Context) -> None:
    with Client(registry.url) as client:
        seen = _walk_catalog(client, ctx.profile.catalog_page)
    if seen < ctx.profile.repositories:
        raise BenchError(f"{registry.label}: the catalog lists only {seen} repositories")
    ctx.catalog_sizes[registry.key] = seen
    if len(set(ctx.catalog_sizes.values())) > 1:
        raise BenchError(f"the catalogs differ in size: {ctx.catalog_sizes}")


def _catalog(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    times = []
    with Client(registry.url) as client, RssSampler(registry.pid).running() as sampler:
        for _ in range(ctx.profile.catalog_walks):
            started = time.perf_counter()
            _walk_catalog(client, ctx.profile.catalog_page)
            times.append(time.perf_counter() - started)
    key = (registry.key, repeat)
    ctx.rss_peaks[key] = max(ctx.rss_peaks.get(key, 0.0), sampler.peak / MiB)
    return {CATALOG.key: statistics.median(times) * 1e3}


# -- transfers ----------------------------------------------------------------------------

BLOB_GET = Metric("blob-get/rate", "blob GET", "MiB/s", True, Target("ratio_at_least", 0.9))
UPLOAD_MONOLITHIC = Metric(
    "upload-monolithic/rate",
    "upload, monolithic (POST, PUT with the body)",
    "MiB/s",
    True,
    Target("ratio_at_least", 2.0),
)
UPLOAD_STREAMED = Metric(
    "upload-streamed/rate",
    "upload, streamed (POST, chunked PATCH, PUT)",
    "MiB/s",
    True,
    Target("ratio_at_least", 2.0),
)


def _big(ctx: Context) -> Blob:
    if ctx.big is None:
        raise BenchError("the big blob was not loaded")
    return ctx.big


def _prepare_blob_get(registry: Registry, ctx: Context) -> None:
    big = _big(ctx)
    with Client(registry.url) as client:
        n = client.read_blob(BIG_REPO, big.digest, bytearray(MiB), verify=True)
    if n != big.size:
        raise BenchError(f"{registry.label}: GET of the big blob gave {n} of {big.size} bytes")


def _blob_get(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    big = _big(ctx)
    buffer = bytearray(MiB)
    with Client(registry.url) as client:
        started = time.perf_counter()
        n = client.read_blob(BIG_REPO, big.digest, buffer)
        seconds = time.perf_counter() - started
    if n != big.size:
        raise BenchError(f"{registry.label}: GET of the big blob gave {n} of {big.size} bytes")
    return {BLOB_GET.key: n / MiB / seconds}


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def _upload(streamed: bool) -> Runner:
    metric = UPLOAD_STREAMED if streamed else UPLOAD_MONOLITHIC

    def run(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
        # A new blob every time: a registry may skip work for a digest it already has.
        blob = make_blob(ctx.profile.upload, _seed(metric.key, registry.key, repeat))
        with Client(registry.url) as client:
            started = time.perf_counter()
            if streamed:
                client.push_blob_streamed(UPLOAD_REPO, blob.chunks(), blob.digest)
            else:
                client.push_blob(UPLOAD_REPO, blob.data, blob.digest)
            seconds = time.perf_counter() - started
            response, _ = client.request("HEAD", f"/v2/{UPLOAD_REPO}/blobs/{blob.digest}")
        if response.getheader("Content-Length") != str(blob.size):
            raise BenchError(f"{registry.label}: the uploaded blob has the wrong size")
        return {metric.key: blob.size / MiB / seconds}

    return run


def _nothing(registry: Registry, ctx: Context) -> None:
    return None


# -- memory -------------------------------------------------------------------------------

RSS_IDLE = Metric("rss-idle/rss", "server RSS, idle (after loading)", "MiB", False)
RSS_LOAD = Metric(
    "rss-load/rss",
    "server RSS, peak under the request loads",
    "MiB",
    False,
    Target("below", 200),
)


def _rss_idle(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    time.sleep(ctx.profile.idle_settle)
    return {RSS_IDLE.key: tree_rss(registry.pid) / MiB}


# -- the list, in running order -----------------------------------------------------------

IMAGE, TAGS, CATALOG_CONTENT, BIG = "image", "tags", "catalog", "big"

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("rss-idle", frozenset(), (RSS_IDLE,), _rss_idle, _nothing),
    Measurement(
        "manifest-get-tag",
        frozenset({IMAGE}),
        _by_tag_metrics,
        _by_tag,
        _check_manifest(_manifest_by_tag_path),
    ),
    Measurement(
        "manifest-get-digest",
        frozenset({IMAGE}),
        _by_digest_metrics,
        _by_digest,
        _check_manifest(_manifest_by_digest_path),
    ),
    Measurement("blob-head", frozenset({IMAGE}), _head_metrics, _head, _check_head),
    Measurement("tags-list", frozenset({IMAGE, TAGS}), _tags_metrics, _tags, _check_tags),
    Measurement(
        "catalog",
        frozenset({IMAGE, CATALOG_CONTENT}),
        (CATALOG,),
        _catalog,
        _prepare_catalog,
    ),
    Measurement("blob-get", frozenset({BIG}), (BLOB_GET,), _blob_get, _prepare_blob_get),
    Measurement("upload-monolithic", frozenset(), (UPLOAD_MONOLITHIC,), _upload(False), _nothing),
    Measurement("upload-streamed", frozenset(), (UPLOAD_STREAMED,), _upload(True), _nothing),
    Measurement(
        "skopeo-big",
        frozenset(),
        SKOPEO_BIG_METRICS,
        skopeo_big,
        prepare_skopeo,
        max_repeat=3,
        slow=True,
    ),
    Measurement("skopeo-layers", frozenset(), SKOPEO_LAYERS_METRICS, skopeo_layers, prepare_skopeo),
    Measurement(
        "concurrent-push",
        frozenset(),
        (CONCURRENT_PUSH,),
        concurrent_push,
        prepare_concurrent_push,
    ),
    Measurement("read-your-writes", frozenset({IMAGE}), RYW_METRICS, read_your_writes, prepare_ryw),
    Measurement(
        "replay-rebuild",
        frozenset(),
        (REPLAY,),
        replay_rebuild,
        prepare_replay,
        applies=lambda registry: registry.backend == "sqlite",
        max_repeat=3,
        slow=True,
        once=True,
    ),
    Measurement(
        "huge-push-rss",
        frozenset(),
        (HUGE_PUSH_RSS, HUGE_PUSH_RATE),
        huge_push,
        prepare_huge_push,
        max_repeat=2,
        slow=True,
    ),
)
NAMES = tuple(m.name for m in MEASUREMENTS)
SLOW = tuple(m.name for m in MEASUREMENTS if m.slow)
# Measurements whose runs feed RSS_LOAD.
LOADS = frozenset({"manifest-get-tag", "manifest-get-digest", "blob-head", "tags-list", "catalog"})
ALL_METRICS: tuple[Metric, ...] = (
    *(metric for m in MEASUREMENTS for metric in m.metrics),
    RSS_LOAD,
)
