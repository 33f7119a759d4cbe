"""Helpers of the geo-replication tests: pushing to a site, reading its tags, waiting
for sites to converge, comparing two sites' views."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from cargohold.domain.ports import Database
from cargohold.projections.schema import VIEW_TABLES
from tests.fixtures.digests import sha256
from tests.fixtures.v2client import OCI_MANIFEST, V2Client

#: Columns holding a site's own log positions: the only ones two sites' views differ in.
LOCAL_COLUMNS = frozenset({"position", "start_position"})


def site_views(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every view's rows without the local position columns, sorted: equal at two sites
    that hold the same events (``projections/merge.py``)."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    for table in VIEW_TABLES:
        cols = [c for c in table.column_names if c not in LOCAL_COLUMNS]
        rows = db.query(f"SELECT {', '.join(cols)} FROM {table.name}")
        dump[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return dump


def push(client: V2Client, name: str, tag: str, seed: str) -> str:
    return push_image(client, name, tag, seed)[0]


def push_image(
    client: V2Client, name: str, tag: str, seed: str, layer_bytes: int = 2048
) -> tuple[str, dict[str, bytes]]:
    """Push an image of one random layer; its manifest digest, and every blob's bytes
    by digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = os.urandom(layer_bytes)
    digests = []
    for data in (config, layer):
        digest = sha256(data)
        r = client.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", body=data)
        assert r.status == 201, (r.status, r.body[:200])
        digests.append(digest)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digests[0],
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digests[1],
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.request(
        "PUT", f"/v2/{name}/manifests/{tag}", body=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status == 201, (r.status, r.body[:200])
    return sha256(manifest), {digests[0]: config, digests[1]: layer, sha256(manifest): manifest}


def until(
    condition: Any,
    timeout: float = 30.0,
    interval: float = 0.05,
    failure: str = "the sites did not converge in time",
) -> None:
    """Poll ``condition`` every ``interval`` s; ``AssertionError(failure)`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(interval)


def tags(client: V2Client, name: str) -> list[str]:
    r = client.request("GET", f"/v2/{name}/tags/list")
    return [] if r.status != 200 else list(json.loads(r.body)["tags"])


def tag_digest(client: V2Client, name: str, tag: str) -> str | None:
    r = client.request("HEAD", f"/v2/{name}/manifests/{tag}")
    return r.headers.get("docker-content-digest") if r.status == 200 else None
