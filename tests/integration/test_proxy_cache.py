"""Pull-through cache organisations against real upstream registries: Quay's API, pulls
that fill the cache, revalidation, and serving what is cached while the upstream fails.

The upstreams are real (``tests/fixtures/upstreams.py``): the reference registry open and
with htpasswd Basic auth, distribution v3 behind a Docker token server, and a second
cargohold with access control on. ``FaultProxy`` sits in front of one where a test needs
to count the upstream's requests or make it answer 429 or break off a blob. The registry
under test is a container on the embedded default driven through falcon's test client;
``test_proxy_cache_serve.py`` runs the same through a real ``serve`` with crane and skopeo.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.domain.identity import AccountName, RobotShortName, TeamName, TeamRole
from cargohold.domain.values import Digest, RepositoryName
from tests.fixtures.fault_proxy import running_proxy
from tests.fixtures.upstreams import Upstream
from tests.operations import verify
from tests.unit.api_v1.support import (
    SYSTEM,
    assert_error,
    basic,
    make_client,
    make_container,
    send_json,
)

OCI_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = make_container(tmp_path)
    try:
        # alice owns "cache"; bob is a member (a team of "member" role); carol is not.
        c.identity.create_organization(AccountName("cache"), AccountName("alice"), SYSTEM)
        pullers = TeamName("pullers")
        c.identity.upsert_team(AccountName("cache"), pullers, TeamRole.MEMBER, SYSTEM)
        c.identity.add_team_member(AccountName("cache"), pullers, AccountName("bob"), SYSTEM)
        token = c.identity.create_robot(AccountName("cache"), RobotShortName("ci"), SYSTEM)
        c.robot_token = token  # type: ignore[attr-defined]
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return make_client(container)


PATH = "/api/v1/organization/cache/proxycache"


def _configure(client: falcon.testing.TestClient, upstream_registry: str, **extra: Any) -> None:
    body = {"upstream_registry": upstream_registry, "insecure": True, **extra}
    r = send_json(client, "POST", PATH, body, basic("alice"))
    assert r.status_code == 201, r.text
    assert r.json == "Created"


def _status(client: falcon.testing.TestClient) -> dict[str, Any]:
    r = client.simulate_get(PATH, headers=basic("alice"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def _pull(
    client: falcon.testing.TestClient, repo: str, reference: str, who: str = "bob"
) -> falcon.testing.Result:
    return client.simulate_get(
        f"/v2/cache/{repo}/manifests/{reference}",
        headers={**basic(who), "Accept": OCI_ACCEPT},
    )


def _pull_image(
    client: falcon.testing.TestClient, repo: str, reference: str, who: str = "bob"
) -> tuple[bytes, dict[str, bytes]]:
    """The manifest and every blob it names, through the cache; asserts each is whole."""
    r = _pull(client, repo, reference, who)
    assert r.status_code == 200, r.text
    manifest = json.loads(r.content)
    blobs: dict[str, bytes] = {}
    for d in [manifest["config"], *manifest["layers"]]:
        b = client.simulate_get(f"/v2/cache/{repo}/blobs/{d['digest']}", headers=basic(who))
        assert b.status_code == 200, b.text
        assert "sha256:" + hashlib.sha256(b.content).hexdigest() == d["digest"]
        assert len(b.content) == d["size"]
        blobs[d["digest"]] = b.content
    return r.content, blobs


def _upstream_blob(upstream: Upstream, repo: str, digest: str) -> bytes:
    with upstream.client(repo) as http:
        r = http.get(f"/v2/{repo}/blobs/{digest}")
        r.raise_for_status()
        return r.content


def _audit(container: Container, namespace: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with container.views_db.transaction() as c:
        rows = c.execute(
            "SELECT kind, performer_name, metadata FROM audit_log WHERE namespace = ? "
            "ORDER BY position, sequence",
            (namespace,),
        ).fetchall()
    return [(str(k), None if p is None else str(p), json.loads(m)) for k, p, m in rows]


def _kinds(container: Container) -> list[str]:
    return [k for k, _, _ in _audit(container, "cache")]


# -- the API ---------------------------------------------------------------------------


def test_the_api_is_quay_shaped_and_never_returns_the_password(
    container: Container, client: falcon.testing.TestClient, basic_upstream: Upstream
) -> None:
    # Not a cache yet: Quay's empty configuration (clients test upstream_registry).
    assert _status(client)["upstream_registry"] == ""
    body = {
        "upstream_registry": basic_upstream.registry,
        "upstream_registry_username": basic_upstream.username,
        "upstream_registry_password": basic_upstream.password,
        "expiration_s": 600,
        "insecure": True,
    }
    # Members read; only admins write.
    r = send_json(client, "POST", PATH, body, basic("bob"))
    assert_error(r, 403, "insufficient_scope")
    assert client.simulate_get(PATH, headers=basic("carol")).status_code == 403
    r = send_json(client, "POST", PATH, body, basic("alice"))
    assert r.status_code == 201 and r.json == "Created"
    got = client.simulate_get(PATH, headers=basic("bob")).json
    assert got["upstream_registry"] == basic_upstream.registry
    assert got["expiration_s"] == 600 and got["insecure"] is True
    assert got["upstream_registry_username"] == basic_upstream.username
    assert got["status"] == {"upstream": "ok", "last_error": None, "failing_since": None}
    assert basic_upstream.password not in json.dumps(got)
    # One configuration at a time.
    assert_error(send_json(client, "POST", PATH, body, basic("alice")), 409, "conflict")
    # Bad input is a 400 naming the field, never a 500.
    bad = send_json(
        client,
        "POST",
        "/api/v1/organization/cache/validateproxycache",
        {"upstream_registry": "not a host", "insecure": True},
        basic("alice"),
    )
    assert "upstream_registry" in assert_error(bad, 400, "invalid_request")["detail"]
    r = send_json(client, "POST", PATH, {**body, "expiration_s": 0}, basic("alice"))
    assert "expiration_s" in assert_error(r, 400, "invalid_request")["detail"]
    r = client.simulate_delete(PATH, headers=basic("alice"))
    assert r.status_code == 204
    assert_error(client.simulate_delete(PATH, headers=basic("alice")), 404, "not_found")
    assert _status(client)["upstream_registry"] == ""
    kinds = _kinds(container)
    assert kinds[-2:] == ["create_proxy_cache_config", "delete_proxy_cache_config"]
    entry = next(m for k, _, m in _audit(container, "cache") if k == "create_proxy_cache_config")
    assert entry["upstream_registry"] == basic_upstream.registry
    # The password is ciphertext in the log, and nowhere in the views.
    with container.views_db.transaction() as c:
        dump = json.dumps([list(r) for r in c.execute("SELECT * FROM proxy_caches").fetchall()])
        dump += json.dumps([list(r) for r in c.execute("SELECT * FROM audit_log").fetchall()])
    assert basic_upstream.password not in dump
    for event in container.log.recorder.select_events(container.proxy_caches.get("cache").id):  # type: ignore[union-attr]
        assert basic_upstream.password.encode() not in event.state


def test_validate_says_valid_anonymous_or_why_not(
    client: falcon.testing.TestClient, basic_upstream: Upstream, open_upstream: Upstream
) -> None:
    url = "/api/v1/organization/cache/validateproxycache"

    def validate(body: dict[str, Any]) -> falcon.testing.Result:
        return send_json(client, "POST", url, {"insecure": True, **body}, basic("alice"))

    r = validate({"upstream_registry": open_upstream.registry})
    assert r.status_code == 202 and r.json == "Valid"
    r = validate({"upstream_registry": basic_upstream.registry})
    assert r.status_code == 202 and r.json == "Anonymous"
    r = validate(
        {
            "upstream_registry": basic_upstream.registry,
            "upstream_registry_username": basic_upstream.username,
            "upstream_registry_password": basic_upstream.password,
        }
    )
    assert r.status_code == 202 and r.json == "Valid"
    r = validate(
        {
            "upstream_registry": basic_upstream.registry,
            "upstream_registry_username": basic_upstream.username,
            "upstream_registry_password": "wrong",
        }
    )
    assert "Failed login" in assert_error(r, 400, "invalid_request")["detail"]
    r = validate({"upstream_registry": "127.0.0.1:9"})
    assert "unreachable" in assert_error(r, 400, "invalid_request")["detail"]


# -- pulling through -------------------------------------------------------------------


def _path() -> str:
    return f"team/app{uuid.uuid4().hex[:8]}"


def test_a_pull_fills_the_cache_with_the_upstreams_bytes_as_events(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = _path()
    pushed = open_upstream.push_image(path, "v1", layers=2, layer_size=300_000)
    _configure(client, open_upstream.registry)
    # carol is no member: no pull; anonymous gets the login challenge.
    assert _pull(client, path, "v1", "carol").status_code == 403
    anonymous = client.simulate_get(f"/v2/cache/{path}/manifests/v1")
    assert anonymous.status_code == 401
    body, blobs = _pull_image(client, path, "v1")
    assert body == pushed["manifest"]
    assert Digest.of(body) == Digest.parse(pushed["digest"])
    for digest, data in blobs.items():
        assert data == _upstream_blob(open_upstream, path, digest)
    # The robot of the organisation pulls too, by digest.
    token: str = container.robot_token  # type: ignore[attr-defined]
    r = client.simulate_get(
        f"/v2/cache/{path}/manifests/{pushed['digest']}",
        headers={**_basic_header("cache+ci", token), "Accept": OCI_ACCEPT},
    )
    assert r.status_code == 200 and r.content == pushed["manifest"]
    # It is all in the log: a push by the cache, under the pull's request.
    name = RepositoryName(f"cache/{path}")
    repo = container.registry.current(name)
    assert repo is not None
    assert repo.tags == {"v1": Digest.parse(pushed["digest"])}
    assert set(map(str, repo.blobs)) == set(pushed["blobs"])
    entries = [(k, p) for k, p, m in _audit(container, "cache") if m.get("repo") == path]
    assert ("push_repo", "proxycache:cache") in entries
    assert ("revalidate_tag", "proxycache:cache") in entries
    # Nobody pushes into a cache.
    r = client.simulate_post(f"/v2/cache/{path}/blobs/uploads/", headers=basic("alice"))
    assert r.status_code == 403
    assert "pull-through cache" in r.json["errors"][0]["message"]
    # A second pull asks the upstream nothing: it is fresh (a day by default).
    open_upstream.stop()
    again, again_blobs = _pull_image(client, path, "v1")
    assert again == body and again_blobs == blobs
    assert _status(client)["status"]["upstream"] == "ok"


def _basic_header(user: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _revalidations(container: Container, path: str) -> int:
    return sum(
        1 for k, _, m in _audit(container, "cache") if k == "revalidate_tag" and m["repo"] == path
    )


def test_a_tag_past_expiration_is_revalidated_with_a_head_and_follows_the_upstream(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = _path()
    first = open_upstream.push_image(path, "v1")
    with running_proxy(open_upstream.url) as proxy:
        _configure(client, proxy.registry, expiration_s=1)
        assert _pull(client, path, "v1").content == first["manifest"]
        second = open_upstream.push_image(path, "v1")
        # Fresh: served from the cache without asking.
        asked = proxy.manifest_requests()
        assert _pull(client, path, "v1").content == first["manifest"]
        assert proxy.manifest_requests() == asked
        time.sleep(1.1)
        assert _pull(client, path, "v1").content == second["manifest"]
        assert proxy.requests[("HEAD", f"/v2/{path}/manifests/v1")] == 1
        # The same digest upstream: one HEAD, a TagRevalidated, nothing fetched.
        time.sleep(1.1)
        before = _revalidations(container, path)
        gets = proxy.requests[("GET", f"/v2/{path}/manifests/v1")]
        assert _pull(client, path, "v1").content == second["manifest"]
        assert _revalidations(container, path) == before + 1
        assert proxy.requests[("GET", f"/v2/{path}/manifests/v1")] == gets
        # Gone upstream: gone here too once it is asked again.
        open_upstream.delete_manifest(path, second["digest"])
        time.sleep(1.1)
        r = _pull(client, path, "v1")
        assert r.status_code == 404 and r.json["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        repo = container.registry.current(RepositoryName(f"cache/{path}"))
        assert repo is not None and "v1" not in repo.tags
    assert verify(container, quiet=True).differences == ()


def test_a_stopped_upstream_leaves_the_cache_serving_and_the_failure_on_record(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = _path()
    pushed = open_upstream.push_image(path, "v1")
    open_upstream.push_image(path, "v2")
    _configure(client, open_upstream.registry, expiration_s=1)
    body, blobs = _pull_image(client, path, "v1")
    open_upstream.stop()
    time.sleep(1.1)
    for _ in range(3):
        again, again_blobs = _pull_image(client, path, "v1")
        assert again == body == pushed["manifest"] and again_blobs == blobs
    status = _status(client)["status"]
    assert status["upstream"] == "failing"
    assert "unreachable" in status["last_error"] and status["failing_since"]
    # What is not cached fails, saying why.
    r = _pull(client, path, "v2")
    assert r.status_code == 503
    assert r.json["errors"][0]["code"] == "UNAVAILABLE"
    assert "not cached" in r.json["errors"][0]["message"]
    # One outage, one event, however many pulls met it.
    assert _kinds(container).count("proxy_cache_upstream_failed") == 1
    open_upstream.start()
    assert _pull(client, path, "v2").status_code == 200
    assert _status(client)["status"] == {
        "upstream": "ok",
        "last_error": None,
        "failing_since": None,
    }
    assert _kinds(container)[-1] != "proxy_cache_upstream_failed"
    assert "proxy_cache_upstream_recovered" in _kinds(container)
    # The cache's views are folds of the log like every other: a replay agrees.
    assert verify(container, quiet=True).differences == ()


@pytest.mark.parametrize(
    ("status", "says", "answer", "code"),
    [(429, "rate-limiting", 429, "TOOMANYREQUESTS"), (503, "answered 503", 503, "UNAVAILABLE")],
)
def test_an_upstream_answering_429_or_5xx_leaves_the_cache_serving(
    container: Container,
    client: falcon.testing.TestClient,
    open_upstream: Upstream,
    status: int,
    says: str,
    answer: int,
    code: str,
) -> None:
    path = _path()
    pushed = open_upstream.push_image(path, "v1")
    with running_proxy(open_upstream.url) as proxy:
        _configure(client, proxy.registry, expiration_s=1)
        body, blobs = _pull_image(client, path, "v1")
        if status == 429:
            proxy.answer_429 = 7
        else:
            proxy.answer_status = status
        time.sleep(1.1)
        again, again_blobs = _pull_image(client, path, "v1")
        assert again == body == pushed["manifest"] and again_blobs == blobs
        assert says in _status(client)["status"]["last_error"]
        r = _pull(client, path, "v9")
        assert r.status_code == answer
        assert r.json["errors"][0]["code"] == code
        if status == 429:
            assert r.headers["Retry-After"] == "7"
        proxy.answer_429 = proxy.answer_status = None
        assert _pull(client, path, "v1").status_code == 200
        assert _status(client)["status"]["upstream"] == "ok"


def test_concurrent_pulls_of_one_missing_blob_fetch_it_upstream_once(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = _path()
    pushed = open_upstream.push_image(path, "v1", layer_size=3 * 1024 * 1024)
    layer = pushed["blobs"][-1]
    with running_proxy(open_upstream.url) as proxy:
        _configure(client, proxy.registry)
        assert _pull(client, path, "v1").status_code == 200
        proxy.bytes_per_second = 4 * 1024 * 1024  # long enough for every puller to join
        expected = _upstream_blob(open_upstream, path, layer)

        def pull() -> bytes:
            r = client.simulate_get(f"/v2/cache/{path}/blobs/{layer}", headers=basic("bob"))
            assert r.status_code == 200, r.text
            return r.content

        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda _: pull(), range(8)))
        assert all(b == expected for b in bodies)
        assert proxy.blob_gets(layer) == 1
        # Linked once the fetch is complete and verified (just after the last byte went).
        name, digest = RepositoryName(f"cache/{path}"), Digest.parse(layer)
        deadline = time.monotonic() + 10
        while container.queries.blob_size(name, digest) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert container.queries.blob_size(name, digest) == len(expected)
        assert not list((container.settings.data_dir / "cache-spool").glob("*.part"))


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_a_cache_logs_in_to_its_upstream(
    request: pytest.FixtureRequest,
    container: Container,
    client: falcon.testing.TestClient,
    kind: str,
) -> None:
    upstream: Upstream = request.getfixturevalue(f"{kind}_upstream")
    path = _path()
    pushed = upstream.push_image(path, "v1", platforms=["linux/amd64", "linux/arm64"])
    _configure(
        client,
        upstream.registry,
        upstream_registry_username=upstream.username,
        upstream_registry_password=upstream.password,
    )
    r = _pull(client, path, "v1")
    assert r.status_code == 200 and r.content == pushed["manifest"]
    for child in pushed["children"].values():
        body, _ = _pull_image(client, path, child)
        assert Digest.of(body) == Digest.parse(child)
    # Wrong credentials: what is cached is served, the rest says why, nothing leaks.
    send_json(client, "DELETE", PATH, None, basic("alice"))
    _configure(
        client,
        upstream.registry,
        upstream_registry_username=upstream.username,
        upstream_registry_password="wrong",
    )
    assert _pull(client, path, "v1").status_code == 200
    r = _pull(client, path, "v404")
    assert r.status_code == 404 and "refused" in r.json["errors"][0]["message"]
    assert "wrong" not in json.dumps(_audit(container, "cache"))
