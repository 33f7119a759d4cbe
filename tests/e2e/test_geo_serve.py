"""Two sites as real ``cargohold serve`` processes on loopback, each the other's geo
peer (``--peer``, one shared ``CARGOHOLD_PEER_TOKEN``): what one site is pushed reaches
the other's views; both push the same repository and tag, and both end with the later
push's digest; every blob pulls at the other site at once, proxied from the peer or
redirected to its signed URL (``geo_missing_blobs``, both), and the blob fetcher then
brings them all; ``cargohold site status`` shows the link caught up and the backlog
empty. (Access control is off, as in the OCI suites, so the superuser's sites endpoint
is shown by ``tests/integration/test_replicator.py``.)
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.server import BASE_ENV, Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import Response, V2Client
from tests.geo import push, push_image, tag_digest, tags, until

pytestmark = pytest.mark.timeout(180)

TOKEN = "shared-by-both-sites-0123456789"


@pytest.fixture(params=["proxy", "redirect"])
def two_sites(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Server, Server, dict[str, Path]]]:
    ports = {"a": free_port(), "b": free_port()}
    dirs = {name: tmp_path / name for name in ports}
    env = {"CARGOHOLD_PEER_TOKEN": TOKEN, "CARGOHOLD_GEO_MISSING_BLOBS": request.param}
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
    manifest, blobs = push_image(at_a, "acme/app", "from-a", "a")
    until(lambda: "from-a" in tags(at_b, "acme/app"))
    # Every blob pulls at B, at once: from B (proxied, or fetched meanwhile), or by a 307
    # to A's signed URL; the manifest is always served by B.
    r = at_b.request("GET", "/v2/acme/app/manifests/from-a")
    assert r.status == 200 and r.body == blobs[manifest]
    for digest, data in blobs.items():
        if digest != manifest:
            assert _pull_blob(at_b, "acme/app", digest) == data
    # And the fetcher brings them all here: then B serves them itself.
    until(lambda: _site_status(dirs["b"], a.url)["peers"][0]["blob_backlog"]["blobs"] == 0)
    for digest, data in blobs.items():
        what = "manifests" if digest == manifest else "blobs"
        r = at_b.request("GET", f"/v2/acme/app/{what}/{digest}")
        assert r.status == 200 and r.body == data
    older = push(at_b, "other/tool", "v1", "b1")
    newer = push(at_a, "other/tool", "v1", "a1")  # later: wins at both
    for site in (at_a, at_b):
        until(lambda site=site: tag_digest(site, "other/tool", "v1") == newer)
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


def _pull_blob(client: V2Client, name: str, digest: str) -> bytes:
    """A blob's bytes as a client gets them, following one redirect."""
    r = client.request("GET", f"/v2/{name}/blobs/{digest}")
    if r.status == 307:
        location = urlsplit(r.headers["location"])
        other = V2Client(f"{location.scheme}://{location.netloc}")
        r = other.request("GET", f"{location.path}?{location.query}")
    assert r.status == 200, (r.status, r.body[:200])
    return r.body


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_token_issued_at_one_site_pulls_at_the_other(tmp_path: Path) -> None:
    """With access control on and one signing key (``signing_key_file``) for both
    sites: alice, made at A, pushes there; B, started later with A as its peer, joins
    A's registry (no admin of its own); a registry token that A issued pulls the image
    at B, byte for byte, its blobs proxied from A."""
    key = tmp_path / "signing-key.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ports = {"a": free_port(), "b": free_port()}
    env = {
        "CARGOHOLD_AUTH": "on",
        "CARGOHOLD_PEER_TOKEN": TOKEN,
        "CARGOHOLD_SIGNING_KEY_FILE": str(key),
        "CARGOHOLD_ADMIN_PASSWORD": "admin-pw-0123",
    }

    def args(name: str, other: str) -> tuple[str, ...]:
        return (
            "--data-dir",
            str(tmp_path / name),
            "--listen",
            f"127.0.0.1:{ports[name]}",
            "--peer",
            f"http://127.0.0.1:{ports[other]}",
        )

    alice = _basic("alice", "alice-pw-0123")
    with serving(*args("a", "b"), cwd=tmp_path, env=env) as a:
        at_a = V2Client(a.url)
        made = at_a.request(
            "POST",
            "/api/v1/superuser/users/",
            body=json.dumps({"username": "alice", "password": "alice-pw-0123"}).encode(),
            headers={**_basic("admin", "admin-pw-0123"), "Content-Type": "application/json"},
        )
        assert made.status == 200, made.body[:200]
        manifest, blobs = push_image(_Authed(a.url, alice), "alice/app", "v1", "tok")
        with serving(*args("b", "a"), cwd=tmp_path, env=env) as b:
            assert "created the superuser" not in b.output()
            at_b = _Authed(b.url, alice)
            until(lambda: "v1" in tags(at_b, "alice/app"))
            r = at_a.request(
                "GET",
                "/v2/auth?service=cargohold&scope=repository:alice/app:pull",
                headers=alice,
            )
            assert r.status == 200, r.body[:200]
            bearer = {"Authorization": f"Bearer {json.loads(r.body)['token']}"}
            for digest, data in blobs.items():
                what = "manifests" if digest == manifest else "blobs"
                r = at_b.plain.request("GET", f"/v2/alice/app/{what}/{digest}", headers=bearer)
                assert r.status == 200 and r.body == data, (what, r.status, r.body[:200])
            r = at_b.plain.request("GET", "/v2/alice/app/manifests/v1")
            assert r.status == 401  # and without it, nothing


class _Authed(V2Client):
    """A client that sends one user's Basic credentials with every request."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(url)
        self.auth = headers
        self.plain = V2Client(url)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        return super().request(method, path, body, {**self.auth, **(headers or {})}, params)
