"""The write-side measurements: skopeo push and pull, concurrent small pushes,
read-your-writes, and the server's memory during a huge streamed push.

- ``skopeo-big``, ``skopeo-layers``: ``skopeo copy`` of an OCI layout on local disk to
  the registry and back into a fresh layout, for one image with one big layer and one with
  many small layers. Every push is of new content: skopeo remembers where it has pushed a
  blob (its blob-info cache, system-wide for root) and would mount it from the earlier
  repository instead of uploading it again, so a layout with the same bytes cannot be
  pushed twice honestly. The layouts are written per push into the run's workdir (outside
  the timing) and removed after it. The layers are gzip streams at level 0 (stored blocks
  of incompressible bytes): skopeo leaves a compressed layer as it is, where it would
  spend its time gzipping an uncompressed one on the way to a registry.
- ``concurrent-push``: ``push_clients`` threads, each with its own connection and
  repository, push ``push_images`` tiny images each (2 blobs, POST + PUT, then the
  manifest by tag), all content new; images/s from a common start to the last 201.
- ``read-your-writes``: a manifest PUT by tag on one connection, then GETs of that tag on
  another (one of 4, in turn: with 2 cargohold workers they land on either) until it
  answers 200: the time from the PUT's answer to the first GET that shows it. Before the
  first repeat: on the PUT's own connection it must be visible at once.
- ``huge-push-rss``: a streamed upload (POST, one chunked PATCH, PUT) of a ``huge_push``
  blob, hashed while sent, with the server's RSS sampled every 100 ms. The blob's files
  are deleted from the registry's storage afterwards (the workdir must not grow by 4 GiB
  per push and registry).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench.content import blocks
from bench.populate import IMAGE_REPO
from bench.servers import BenchError, Registry, RssSampler
from bench.spec import Metric, MiB, Target
from bench.v2 import LAYER_TAR, MANIFEST_ACCEPT, OCI_CONFIG, OCI_MANIFEST, Client, tiny_image

if TYPE_CHECKING:
    from bench.measurements import Context

SKOPEO_BIG_REPO = "bench/skopeo-big"
SKOPEO_LAYERS_REPO = "bench/skopeo-layers"
PUSH_REPO_PREFIX = "bench/push/c"
RYW_REPO = "bench/ryw"
HUGE_REPO = "bench/huge"
LAYER_GZIP = LAYER_TAR + "+gzip"
SKOPEO_TIMEOUT = 1800.0

AT_LEAST_1 = Target("ratio_at_least", 1.0)
NO_SLOWER = Target("ratio_at_most", 1.0)

SKOPEO_BIG_METRICS = (
    Metric("skopeo-big/push", "skopeo push, 512 MiB image (1 layer)", "MiB/s", True, AT_LEAST_1),
    Metric("skopeo-big/pull", "skopeo pull, 512 MiB image (1 layer)", "MiB/s", True, AT_LEAST_1),
)
SKOPEO_LAYERS_METRICS = (
    Metric("skopeo-layers/push", "skopeo push, 50-layer image", "s", False, NO_SLOWER),
    Metric("skopeo-layers/pull", "skopeo pull, 50-layer image", "s", False, NO_SLOWER),
)
CONCURRENT_PUSH = Metric(
    "concurrent-push/rate",
    "16 clients pushing small images",
    "images/s",
    True,
    Target("ratio_at_least", 1.0, embedded_only=True),
)
RYW_METRICS = (
    Metric("read-your-writes/p50", "read-your-writes: PUT to visible, p50", "ms", False),
    Metric(
        "read-your-writes/p99",
        "read-your-writes: PUT to visible, p99",
        "ms",
        False,
        Target("below", 20),
    ),
)
HUGE_PUSH_RSS = Metric(
    "huge-push/rss",
    "server RSS, peak during a streamed 4 GiB push",
    "MiB",
    False,
    Target("below", 200),
)
HUGE_PUSH_RATE = Metric("huge-push/rate", "streamed 4 GiB push", "MiB/s", True)


# -- OCI layouts and skopeo ---------------------------------------------------------------


def skopeo_binary() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise BenchError("skopeo is not installed (Debian package skopeo: apt-get install skopeo)")
    return found


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return "sha256:" + hexdigest, len(data)


def _write_gzip_layer(blobs: Path, size: int, seed: int) -> tuple[str, int, str]:
    """A gzip stream (level 0) of ``size`` new bytes: its digest and size, and the
    digest of the bytes inside (the diff_id)."""
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)
    packed, raw = hashlib.sha256(), hashlib.sha256()
    total = 0
    partial = blobs / f"partial-{seed}"
    with partial.open("wb") as f:
        for block in blocks(size, seed):
            raw.update(block)
            for piece in (compressor.compress(block),):
                packed.update(piece)
                f.write(piece)
                total += len(piece)
        tail = compressor.flush()
        packed.update(tail)
        f.write(tail)
        total += len(tail)
    partial.rename(blobs / packed.hexdigest())
    return "sha256:" + packed.hexdigest(), total, "sha256:" + raw.hexdigest()


def write_layout(path: Path, layer_sizes: list[int], seed: int) -> str:
    """An OCI image layout at ``path`` holding one image tagged ``latest`` with a layer of
    each size in ``layer_sizes`` (all new bytes for ``seed``); the manifest's digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
    layers, diff_ids = [], []
    for i, size in enumerate(layer_sizes):
        digest, packed_size, diff_id = _write_gzip_layer(blobs, size, seed * 1000 + i)
        layers.append({"mediaType": LAYER_GZIP, "digest": digest, "size": packed_size})
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [f"BENCH_SEED={seed}"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = _write_blob(blobs, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_size = _write_blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return manifest_digest


def _layout_digest(path: Path) -> str:
    index = json.loads((path / "index.json").read_text(encoding="utf-8"))
    return str(index["manifests"][0]["digest"])


def _skopeo_copy(source: str, dest: str) -> float:
    """``skopeo copy`` without TLS (loopback, plain HTTP); its seconds."""
    argv = [
        skopeo_binary(),
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        source,
        dest,
    ]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"skopeo copy {source} {dest} failed: {done.stderr[-2000:]}")
    return seconds


def _skopeo_round(
    registry: Registry, ctx: Context, repeat: int, repo: str, sizes: list[int], what: str
) -> tuple[float, float, int]:
    """Push a new layout of ``sizes`` to ``repo``, pull it into a fresh one: seconds each
    and the bytes of the layers."""
    scratch = ctx.workdir / "skopeo" / f"{what}-{registry.key}-{repeat}"
    shutil.rmtree(scratch, ignore_errors=True)
    source, pulled = scratch / "source", scratch / "pulled"
    try:
        seed = zlib.crc32(f"{what} {registry.key} {repeat}".encode())
        digest = write_layout(source, sizes, seed)
        layer_bytes = sum(f.stat().st_size for f in (source / "blobs" / "sha256").iterdir())
        remote = f"docker://{registry.host}/{repo}:r{repeat}"
        push = _skopeo_copy(f"oci:{source}:latest", remote)
        pull = _skopeo_copy(remote, f"oci:{pulled}:latest")
        if _layout_digest(pulled) != digest:
            raise BenchError(f"{registry.label}: skopeo pulled another manifest than it pushed")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return push, pull, layer_bytes


def prepare_skopeo(registry: Registry, ctx: Context) -> None:
    skopeo_binary()


def skopeo_big(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    push, pull, size = _skopeo_round(
        registry, ctx, repeat, SKOPEO_BIG_REPO, [ctx.profile.skopeo_big], "big"
    )
    push_metric, pull_metric = SKOPEO_BIG_METRICS
    return {push_metric.key: size / MiB / push, pull_metric.key: size / MiB / pull}


def skopeo_layers(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    sizes = [ctx.profile.skopeo_layer_size] * ctx.profile.skopeo_layers
    push, pull, _ = _skopeo_round(registry, ctx, repeat, SKOPEO_LAYERS_REPO, sizes, "layers")
    push_metric, pull_metric = SKOPEO_LAYERS_METRICS
    return {push_metric.key: push, pull_metric.key: pull}


# -- concurrent small pushes --------------------------------------------------------------


def prepare_concurrent_push(registry: Registry, ctx: Context) -> None:
    return None


def concurrent_push(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    clients, images = ctx.profile.push_clients, ctx.profile.push_images
    start = threading.Barrier(clients + 1, timeout=120)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        repo = f"{PUSH_REPO_PREFIX}{i:02d}"
        try:
            with Client(registry.url) as c:
                c.request("GET", "/v2/")  # connected before the start
                start.wait()
                for j in range(images):
                    manifest, _ = tiny_image(c, repo, f"{registry.key} {repeat} {i} {j}")
                    c.put_manifest(repo, f"r{repeat}-{j}", manifest)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"{registry.label}: a concurrent push failed: {errors[0]}")
    with Client(registry.url) as c:
        listing, _ = c.get_json(f"/v2/{PUSH_REPO_PREFIX}{clients - 1:02d}/tags/list")
    if f"r{repeat}-{images - 1}" not in (listing.get("tags") or []):
        raise BenchError(f"{registry.label}: a concurrently pushed tag is missing")
    return {CONCURRENT_PUSH.key: clients * images / seconds}


# -- read-your-writes ---------------------------------------------------------------------

RYW_READERS = 4
RYW_GIVE_UP = 10.0


def _tag_path(tag: str) -> str:
    return f"/v2/{RYW_REPO}/manifests/{tag}"


def prepare_ryw(registry: Registry, ctx: Context) -> None:
    with Client(registry.url) as client:
        client.mount(RYW_REPO, ctx.image.config, IMAGE_REPO)
        client.mount(RYW_REPO, ctx.image.layer, IMAGE_REPO)
        for i in range(5):
            tag = f"same-connection-{i}"
            client.put_manifest(RYW_REPO, tag, ctx.image.manifest)
            response, _ = client.request(
                "GET", _tag_path(tag), headers={"Accept": MANIFEST_ACCEPT}, expect=(200, 404)
            )
            if response.status != 200:
                raise BenchError(
                    f"{registry.label}: a tag PUT was not visible at once on the same "
                    "connection (read-your-writes)"
                )


def read_your_writes(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    lags: list[float] = []
    headers = {"Accept": MANIFEST_ACCEPT}
    readers = [Client(registry.url) for _ in range(RYW_READERS)]
    try:
        with Client(registry.url) as writer:
            for reader in readers:
                reader.request("GET", "/v2/")
            for i in range(ctx.profile.ryw_samples):
                tag = f"r{repeat}-{i:05d}"
                writer.put_manifest(RYW_REPO, tag, ctx.image.manifest)
                put_done = time.perf_counter()
                reader = readers[i % RYW_READERS]
                while True:
                    response, _ = reader.request(
                        "GET", _tag_path(tag), headers=headers, expect=(200, 404)
                    )
                    now = time.perf_counter()
                    if response.status == 200:
                        break
                    if now - put_done > RYW_GIVE_UP:
                        raise BenchError(
                            f"{registry.label}: tag {tag} not visible {RYW_GIVE_UP:g}s "
                            "after its PUT"
                        )
                    time.sleep(0.0005)
                lags.append((now - put_done) * 1e3)
    finally:
        for reader in readers:
            reader.close()
    lags.sort()
    p50, p99 = RYW_METRICS
    return {
        p50.key: statistics.median(lags),
        p99.key: lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))],
    }


# -- memory during a huge push ------------------------------------------------------------


def prepare_huge_push(registry: Registry, ctx: Context) -> None:
    return None


def _free_blob(registry: Registry, hexdigest: str) -> int:
    """Delete the files (over 1 MiB) of a blob from the registry's storage; bytes freed."""
    freed = 0
    for root in registry.data_roots:
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if hexdigest not in path:
                    continue
                try:
                    size = os.stat(path).st_size
                    if size > MiB:
                        os.unlink(path)
                        freed += size
                except FileNotFoundError:
                    continue
    return freed


def huge_push(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    size = ctx.profile.huge_push
    seed = zlib.crc32(f"huge {registry.key} {repeat}".encode())
    hasher = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for block in blocks(size, seed):
            hasher.update(block)
            yield block

    with Client(registry.url) as client, RssSampler(registry.pid).running() as sampler:
        started = time.perf_counter()
        client.push_blob_streamed(HUGE_REPO, chunks(), lambda: "sha256:" + hasher.hexdigest())
        seconds = time.perf_counter() - started
    digest = "sha256:" + hasher.hexdigest()
    with Client(registry.url) as client:
        response, _ = client.request("HEAD", f"/v2/{HUGE_REPO}/blobs/{digest}")
    if response.getheader("Content-Length") != str(size):
        raise BenchError(f"{registry.label}: the huge blob has the wrong size")
    freed = _free_blob(registry, hasher.hexdigest())
    if freed < size:
        print(
            f"  note: {registry.label}: only {freed / MiB:,.0f} of the {size / MiB:,.0f} MiB "
            "pushed found and freed in its storage",
            file=sys.stderr,
            flush=True,
        )
    return {HUGE_PUSH_RSS.key: sampler.peak / MiB, HUGE_PUSH_RATE.key: size / MiB / seconds}
