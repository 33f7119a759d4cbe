"""The upstream registries of ``tests.fixtures.upstreams`` do what the mirroring tests
assume: content pushed is served back, auth is enforced the way each kind says, and an
upstream stopped mid-test refuses connections until it is started again."""

from __future__ import annotations

import json

import httpx
import jwt
import pytest

from tests.fixtures.digests import sha256
from tests.fixtures.images import OCI_INDEX, OCI_MANIFEST
from tests.fixtures.upstreams import MIRROR_USER, Upstream

ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
KINDS = ["open_upstream", "basic_upstream", "token_upstream"]


@pytest.fixture(params=KINDS)
def upstream(request: pytest.FixtureRequest) -> Upstream:
    value: Upstream = request.getfixturevalue(request.param)
    return value


def get_manifest(upstream: Upstream, repo: str, reference: str) -> httpx.Response:
    with upstream.client(repo) as http:
        return http.get(f"/v2/{repo}/manifests/{reference}", headers=ACCEPT)


def test_a_pushed_image_is_served_back_by_tag(upstream: Upstream) -> None:
    pushed = upstream.push_image("fixtures/single", "v1", layers=2, layer_size=4096)

    assert pushed["digest"] == sha256(pushed["manifest"])
    r = get_manifest(upstream, "fixtures/single", "v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == pushed["digest"]
    assert sha256(r.content) == pushed["digest"]
    assert r.content == pushed["manifest"]
    assert len(pushed["blobs"]) == 3
    with upstream.client("fixtures/single") as http:
        for digest in pushed["blobs"]:
            blob = http.get(f"/v2/fixtures/single/blobs/{digest}", follow_redirects=True)
            assert blob.status_code == 200
            assert sha256(blob.content) == digest


def test_a_multi_platform_image_is_an_index_over_per_platform_images(
    upstream: Upstream,
) -> None:
    pushed = upstream.push_image("fixtures/multi", "v1", platforms=["linux/amd64", "linux/arm64"])

    r = get_manifest(upstream, "fixtures/multi", "v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == pushed["digest"]
    index = json.loads(r.content)
    assert index["mediaType"] == OCI_INDEX
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert platforms == pushed["children"]
    for platform, digest in pushed["children"].items():
        child = get_manifest(upstream, "fixtures/multi", digest)
        assert child.status_code == 200
        config_digest = json.loads(child.content)["config"]["digest"]
        with upstream.client("fixtures/multi") as http:
            config = http.get(f"/v2/fixtures/multi/blobs/{config_digest}").json()
        assert f"{config['os']}/{config['architecture']}" == platform


def test_a_deleted_manifest_is_gone(upstream: Upstream) -> None:
    pushed = upstream.push_image("fixtures/deleted", "v1")

    upstream.delete_manifest("fixtures/deleted", pushed["digest"])

    assert get_manifest(upstream, "fixtures/deleted", "v1").status_code == 404
    assert get_manifest(upstream, "fixtures/deleted", pushed["digest"]).status_code == 404


def test_the_open_upstream_needs_no_credentials(open_upstream: Upstream) -> None:
    assert open_upstream.username is None and open_upstream.password is None
    assert open_upstream.registry == open_upstream.url.removeprefix("http://")
    assert httpx.get(f"{open_upstream.url}/v2/").status_code == 200


def test_the_basic_upstream_refuses_anonymous_and_wrong_credentials(
    basic_upstream: Upstream,
) -> None:
    r = httpx.get(f"{basic_upstream.url}/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")

    wrong = httpx.get(f"{basic_upstream.url}/v2/", auth=(MIRROR_USER, "not-the-password"))
    assert wrong.status_code == 401

    assert basic_upstream.username == MIRROR_USER and basic_upstream.password
    right = httpx.get(
        f"{basic_upstream.url}/v2/", auth=(basic_upstream.username, basic_upstream.password)
    )
    assert right.status_code == 200


def test_the_token_upstream_challenges_then_accepts_a_token_from_its_server(
    token_upstream: Upstream,
) -> None:
    server = token_upstream.token_server
    assert server is not None
    pushed = token_upstream.push_image("fixtures/token", "v1")
    assert server.token_requests == 0  # the fixture's own tokens are minted in-process

    url = f"{token_upstream.url}/v2/fixtures/token/manifests/v1"
    challenged = httpx.get(url, headers=ACCEPT)
    assert challenged.status_code == 401
    challenge = challenged.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{server.realm}"')
    assert f'service="{server.service}"' in challenge
    assert 'scope="repository:fixtures/token:pull"' in challenge

    params = {"service": server.service, "scope": "repository:fixtures/token:pull"}
    anonymous = httpx.get(server.realm, params=params)
    assert anonymous.status_code == 401
    assert "errors" in anonymous.json()
    wrong = httpx.get(server.realm, params=params, auth=(MIRROR_USER, "not-the-password"))
    assert wrong.status_code == 401

    assert token_upstream.username == MIRROR_USER and token_upstream.password
    issued = httpx.get(
        server.realm, params=params, auth=(token_upstream.username, token_upstream.password)
    )
    assert issued.status_code == 200
    body = issued.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] > 0
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == server.service
    assert claims["access"] == [
        {"type": "repository", "name": "fixtures/token", "actions": ["pull"]}
    ]
    assert server.token_requests == 3

    r = httpx.get(url, headers={**ACCEPT, "Authorization": f"Bearer {body['token']}"})
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == pushed["digest"]

    # A token for another repository does not open this one.
    other = server.mint(["repository:fixtures/other:pull"])
    denied = httpx.get(url, headers={**ACCEPT, "Authorization": f"Bearer {other}"})
    assert denied.status_code == 401


def test_the_token_server_can_answer_429_for_a_while(token_upstream: Upstream) -> None:
    server = token_upstream.token_server
    assert server is not None
    server.fail_next(2)
    params = {"service": server.service, "scope": "repository:fixtures/token:pull"}
    auth = (MIRROR_USER, token_upstream.password or "")

    statuses = [httpx.get(server.realm, params=params, auth=auth) for _ in range(3)]

    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "1"
    assert server.token_requests == 3


def test_a_stopped_upstream_refuses_connections_until_started_again(
    upstream: Upstream,
) -> None:
    pushed = upstream.push_image("fixtures/restarted", "v1")

    upstream.stop()
    assert not upstream.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{upstream.url}/v2/")

    upstream.start()
    assert upstream.running
    r = get_manifest(upstream, "fixtures/restarted", "v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == pushed["digest"]
    assert r.content == pushed["manifest"]
