"""The registry as of a moment over HTTP (``serve --as-of``): /v2 and /api/v1 show that
moment's content, decide access by the live rules, and refuse every write with one
clear error before authentication."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap
from cargohold.config import load_settings
from cargohold.domain.identity import (
    AccountName,
    Principal,
    PrincipalKind,
    RepositoryRole,
    Visibility,
)
from cargohold.domain.values import RepositoryName
from tests.factories import ManualClock
from tests.unit.api_v1.support import (
    OCI_MANIFEST,
    PASSWORDS,
    SYSTEM,
    assert_error,
    basic,
    make_client,
    push_image,
)

T0 = 1_700_000_000_000
APP = RepositoryName("alice/app")
PUB = RepositoryName("alice/pub")
BOB = Principal(PrincipalKind.USER, "bob")


def _settings(tmp_path: Path, as_of: str = "") -> Any:
    return load_settings(
        environ={},
        overrides={
            "data_dir": tmp_path / "data",
            "admin_password": PASSWORDS["admin"],
            "as_of": as_of,
        },
    )


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[Container, ManualClock, dict[str, str]]]:
    """alice/app: v1 pushed at T0 (bob may read), moved at T0+1000, bob revoked at
    T0+2000; alice/pub public until T0+2000."""
    clock = ManualClock(T0)
    live = bootstrap(_settings(tmp_path), hasher=Argon2PasswordHasher.cheap(), wall_ms=clock)
    for name in ("alice", "bob"):
        live.identity.create_user(AccountName(name), f"{name}@example.com", PASSWORDS[name], SYSTEM)
    client = make_client(live)
    digests = {"first": push_image(client, "alice/app", basic("alice"))}
    live.registry.grant(APP, BOB, RepositoryRole.READ, SYSTEM)
    live.registry.create_repository(PUB, SYSTEM, Visibility.PUBLIC)
    push_image(client, "alice/pub", basic("alice"))
    clock.ms += 1000
    other = client.simulate_put(
        "/v2/alice/app/manifests/v1",
        body=_manifest_moved(client, digests["first"]),
        headers={**basic("alice"), "Content-Type": OCI_MANIFEST},
    )
    assert other.status_code == 201, other.text
    digests["second"] = other.headers["Docker-Content-Digest"]
    clock.ms += 1000
    live.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    live.registry.revoke(APP, BOB, SYSTEM)
    live.registry.set_visibility(PUB, Visibility.PRIVATE, SYSTEM)
    clock.ms += 60_000
    try:
        yield live, clock, digests
    finally:
        live.close()


def _manifest_moved(client: falcon.testing.TestClient, digest: str) -> bytes:
    """The manifest of ``digest`` with an annotation: another digest, same blobs."""
    r = client.simulate_get(
        f"/v2/alice/app/manifests/{digest}",
        headers={**basic("alice"), "Accept": OCI_MANIFEST},
    )
    manifest = json.loads(r.content)
    manifest["annotations"] = {"moved": "yes"}
    return json.dumps(manifest).encode()


@pytest.fixture
def past(tmp_path: Path, history: tuple[Container, ManualClock, dict[str, str]]) -> Iterator[Any]:
    _, clock, _ = history
    opened: list[Container] = []

    def at(ms: int) -> falcon.testing.TestClient:
        c = bootstrap(
            _settings(tmp_path, f"@{ms / 1000:.3f}"),
            hasher=Argon2PasswordHasher.cheap(),
            wall_ms=clock,
        )
        opened.append(c)
        return make_client(c)

    try:
        yield at
    finally:
        for c in opened:
            c.close()


def _manifest(client: falcon.testing.TestClient, who: dict[str, str]) -> falcon.testing.Result:
    return client.simulate_get(
        "/v2/alice/app/manifests/v1", headers={**who, "Accept": OCI_MANIFEST}
    )


def test_a_tag_pulls_the_manifest_it_pointed_to_then(past: Any, history: Any) -> None:
    _, _, digests = history
    for moment, expected in ((T0 + 500, digests["first"]), (T0 + 1500, digests["second"])):
        r = _manifest(past(moment), basic("alice"))
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == expected
    before = _manifest(past(T0 - 1), basic("alice"))
    assert before.status_code == 404 and before.json["errors"][0]["code"] == "NAME_UNKNOWN"


def test_who_may_read_is_decided_now(past: Any) -> None:
    then = past(T0 + 500)
    # bob could read alice/app at T0+500 but his grant is revoked since: not now
    r = _manifest(then, basic("bob"))
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    # alice/pub was public then, private now: the anonymous may not read its past
    r = then.simulate_get("/v2/alice/pub/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 401
    # the catalog lists the moment's repositories the caller may read now
    r = then.simulate_get("/v2/_catalog", headers=basic("alice"))
    assert r.json == {"repositories": ["alice/app", "alice/pub"]}
    r = then.simulate_get("/v2/_catalog", headers=basic("bob"))
    assert r.json == {"repositories": []}


def test_every_write_is_refused_before_authentication(past: Any) -> None:
    then = past(T0 + 500)
    for method, path in (
        ("PUT", "/v2/alice/app/manifests/v2"),
        ("DELETE", "/v2/alice/app/manifests/v1"),
        ("POST", "/v2/alice/app/blobs/uploads/"),
        ("PATCH", "/v2/alice/app/blobs/uploads/x"),
        ("DELETE", "/v2/alice/app/blobs/sha256:" + "0" * 64),
    ):
        for headers in ({}, basic("alice")):
            r = then.simulate_request(method, path, body=b"{}", headers=headers)
            assert r.status_code == 405, (method, path, r.text)
            error = r.json["errors"][0]
            assert error["code"] == "UNSUPPORTED"
            assert "as of 2023-11-14T22:13:20.500Z" in error["message"]
    for method, path, body in (
        ("PUT", "/api/v1/repository/alice/app/tag/v1", {"manifest_digest": "x"}),
        ("DELETE", "/api/v1/repository/alice/app/tag/v1", None),
        ("POST", "/api/v1/organization/", {"name": "acme"}),
        ("PUT", "/api/v1/repository/alice/app/permissions/user/bob", {"role": "read"}),
    ):
        r = then.simulate_request(
            method, path, body=None if body is None else json.dumps(body), headers=basic("alice")
        )
        assert_error(r, 405, "read_only")


def test_api_v1_shows_the_moment(past: Any, history: Any) -> None:
    _, _, digests = history
    then = past(T0 + 500)
    r = then.simulate_get("/api/v1/repository/alice/app/tag/", headers=basic("alice"))
    assert r.status_code == 200, r.text
    assert [(t["name"], t["manifest_digest"]) for t in r.json["tags"]] == [("v1", digests["first"])]
    r = then.simulate_get("/api/v1/repository/alice/app/permissions/user/", headers=basic("alice"))
    assert r.status_code == 200, r.text
    assert {name: p["role"] for name, p in r.json["permissions"].items()} == {"bob": "read"}
    # an organisation created since did not exist then; it does now
    r = then.simulate_get("/api/v1/organization/acme", headers=basic("alice"))
    assert_error(r, 404, "not_found")
    r = past(T0 + 2500).simulate_get("/api/v1/organization/acme", headers=basic("alice"))
    assert r.status_code == 200 and r.json["name"] == "acme"
    # exporting logs is a POST that writes nothing: open
    r = then.simulate_post("/api/v1/repository/alice/app/exportlogs", headers=basic("alice"))
    assert r.status_code == 200, r.text
    kinds = [json.loads(line)["kind"] for line in r.text.splitlines()]
    assert "push_repo" in kinds and "change_repo_permission" not in kinds
