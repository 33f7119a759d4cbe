"""Loading the same content into every registry, fast, before anything is timed.

- ``image``: one tiny image (a config and a 1 KiB layer) tagged ``latest`` in
  ``bench/image``: the manifest GETs and blob HEADs read it.
- ``tags``: ``bench/tags`` holding exactly ``count`` tags (a tag list of one page, also for
  cargohold, whose pages stop at 10,000), all on the tiny image's manifest: one manifest
  PUT by tag each (its blobs mounted from ``bench/image`` first).
- ``catalog``: ``count`` repositories ``bench/catalog/rNNNNN``, each with the tiny image
  (both blobs mounted from ``bench/image``, then the manifest PUT).
- ``big``: one large blob in ``bench/big``, pushed whole, and a manifest naming it (so
  that every registry lists ``bench/big`` in its catalog: distribution v3 leaves out a
  repository without a manifest, 2.8 and cargohold do not).

The many small writes go through ``PROCESSES`` client processes, each with its own
keep-alive connection (one process would be bound by its GIL, and one connection by the
server's latency).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass

from bench.content import Blob
from bench.v2 import LAYER_TAR, OCI_CONFIG, OCI_MANIFEST, Client, tiny_image

PROCESSES = 8
IMAGE_REPO = "bench/image"
TAGS_REPO = "bench/tags"
CATALOG_PREFIX = "bench/catalog/r"
BIG_REPO = "bench/big"
UPLOAD_REPO = "bench/uploads"


@dataclass(frozen=True)
class Image:
    manifest: bytes
    digest: str
    config: str
    layer: str


def push_image(url: str) -> Image:
    with Client(url) as client:
        manifest, (config, layer) = tiny_image(client, IMAGE_REPO, "bench")
        digest = client.put_manifest(IMAGE_REPO, "latest", manifest)
    return Image(manifest, digest, config, layer)


def tag_names(count: int) -> list[str]:
    return [f"t{i:05d}" for i in range(count)]


def catalog_names(count: int) -> list[str]:
    return [f"{CATALOG_PREFIX}{i:05d}" for i in range(count)]


def _tag_slice(url: str, manifest: bytes, tags: Sequence[str]) -> int:
    with Client(url) as client:
        for tag in tags:
            client.put_manifest(TAGS_REPO, tag, manifest)
    return len(tags)


def _catalog_slice(url: str, image: Image, names: Sequence[str]) -> int:
    with Client(url) as client:
        for name in names:
            client.mount(name, image.config, IMAGE_REPO)
            client.mount(name, image.layer, IMAGE_REPO)
            client.put_manifest(name, "latest", image.manifest)
    return len(names)


def _spread(items: Sequence[str], parts: int) -> list[list[str]]:
    return [list(items[i::parts]) for i in range(parts)]


def push_tags(url: str, image: Image, count: int) -> None:
    with Client(url) as client:
        client.mount(TAGS_REPO, image.config, IMAGE_REPO)
        client.mount(TAGS_REPO, image.layer, IMAGE_REPO)
    parts = _spread(tag_names(count), PROCESSES)
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        pool.starmap(_tag_slice, [(url, image.manifest, part) for part in parts if part])


def push_catalog(url: str, image: Image, count: int) -> None:
    parts = _spread(catalog_names(count), PROCESSES)
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        pool.starmap(_catalog_slice, [(url, image, part) for part in parts if part])


def push_big(url: str, blob: Blob) -> None:
    with Client(url) as client:
        client.push_blob(BIG_REPO, blob.data, blob.digest)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        config_digest = client.push_blob(BIG_REPO, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": LAYER_TAR, "digest": blob.digest, "size": blob.size}],
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        client.put_manifest(BIG_REPO, "latest", body)
