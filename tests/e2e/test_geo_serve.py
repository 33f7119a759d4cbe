"""Two sites as real ``cargohold serve`` processes on loopback, each the other's geo
peer (``--peer``, one shared ``CARGOHOLD_PEER_TOKEN``): what one site is pushed reaches
the other's views; both push the same repository and tag, and both end with the later
push's digest; ``cargohold site status`` shows the link caught up. (Blobs do not travel
yet: the other site lists the tags and answers HEAD for the manifests, it cannot serve
their bytes; see docs/geo-replication.md. Access control is off, as in the OCI suites,
so the superuser's sites endpoint is shown by ``tests/integration/test_replicator.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.digests import sha256
from tests.fixtures.server import BASE_ENV, Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import OCI_MANIFEST, V2Client

pytestmark = pytest.mark.timeout(180)

TOKEN = "shared-by-both-sites-0123456789"


def _push(client: V2Client, name: str, tag: str, seed: str) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = os.urandom(2048)
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
    return sha256(manifest)


def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the sites did not converge in time")
        time.sleep(0.05)


@pytest.fixture
def two_sites(tmp_path: Path) -> Iterator[tuple[Server, Server, dict[str, Path]]]:
    ports = {"a": free_port(), "b": free_port()}
    dirs = {name: tmp_path / name for name in ports}
    env = {"CARGOHOLD_PEER_TOKEN": TOKEN}
    args = {
        name: (
            "--data-dir",
            str(dirs[name]),
            "--listen",
            f"127.0.0.1:{ports[name]}",
            "--peer",
            f"http://127.0.0.1:{ports['b' if name == 'a' else 'a']}",
        )
        for name in ports
    }
    with (
        serving(*args["a"], cwd=tmp_path, env={**env, "CARGOHOLD_SITE_NAME": "site-a"}) as a,
        serving(*args["b"], cwd=tmp_path, env={**env, "CARGOHOLD_SITE_NAME": "site-b"}) as b,
    ):
        yield a, b, dirs


def test_two_serving_sites_replicate_each_other(
    two_sites: tuple[Server, Server, dict[str, Path]],
) -> None:
    a, b, dirs = two_sites
    at_a, at_b = V2Client(a.url), V2Client(b.url)
    _push(at_a, "acme/app", "from-a", "a")
    _until(lambda: "from-a" in _tags(at_b, "acme/app"))
    older = _push(at_b, "other/tool", "v1", "b1")
    newer = _push(at_a, "other/tool", "v1", "a1")  # later: wins at both
    for site in (at_a, at_b):
        _until(lambda site=site: _tag_digest(site, "other/tool", "v1") == newer)
    assert older != newer
    status = _site_status(dirs["b"], a.url)
    assert status["site"]["site_name"] == "site-b"
    [peer] = status["peers"]
    assert (peer["site_name"], peer["error"], peer["url"]) == ("site-a", None, a.url)
    assert peer["state"] == "caught-up" and peer["lag_events"] == 0
    at_a_status = _site_status(dirs["a"], b.url)
    assert at_a_status["peers"][0]["site_id"] == status["site"]["site_id"]


def _site_status(data_dir: Path, peer: str) -> Any:
    printed = subprocess.run(
        [sys.executable, "-m", "cargohold.cli", "site", "status", "--data-dir", str(data_dir)],
        env={
            **BASE_ENV,
            "CARGOHOLD_PEER_TOKEN": TOKEN,
            "CARGOHOLD_PEERS": peer,
            "CARGOHOLD_SITE_NAME": data_dir.name and f"site-{data_dir.name}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(printed.stdout)


def _tags(client: V2Client, name: str) -> list[str]:
    r = client.request("GET", f"/v2/{name}/tags/list")
    return [] if r.status != 200 else list(json.loads(r.body)["tags"])


def _tag_digest(client: V2Client, name: str, tag: str) -> str | None:
    r = client.request("HEAD", f"/v2/{name}/manifests/{tag}")
    return r.headers.get("docker-content-digest") if r.status == 200 else None
