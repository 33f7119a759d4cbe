"""The /api/v1 surface as a whole: routing, errors, credentials, bodies."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.http.api_v1.request import encode_page_token
from tests.unit.api_v1.support import (
    assert_error,
    basic,
    bearer,
    create_repository,
    send_json,
)


def test_unknown_endpoints_are_404_in_the_error_shape(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get("/api/v1/nothing/here"), 404, "not_found")
    assert_error(client.simulate_get("/api/v1"), 404, "not_found")
    # The sink owns every path under the prefix, even odd ones.
    assert_error(client.simulate_get("/api/v1/users/a%0Ab/x"), 404, "not_found")


def test_a_method_the_endpoint_lacks_is_405_with_allow(client: falcon.testing.TestClient) -> None:
    r = client.simulate_patch("/api/v1/users/alice")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"
    r = client.simulate_post("/api/v1/superuser/users/alice", headers=basic("admin"))
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, PUT"


def test_trailing_slash_is_optional(client: falcon.testing.TestClient) -> None:
    for path in ("/api/v1/user/", "/api/v1/user"):
        r = client.simulate_get(path, headers=basic("alice"))
        assert r.status_code == 200 and r.json["username"] == "alice"


def test_error_type_urls_resolve(client: falcon.testing.TestClient) -> None:
    body = assert_error(client.simulate_get("/api/v1/users/nobody"), 404, "not_found")
    path = body["type"].split("falconframework.org", 1)[1]
    r = client.simulate_get(path)
    assert r.status_code == 200
    assert r.json["title"] == "not_found" and r.json["type"] == body["type"]
    assert_error(client.simulate_get("/api/v1/error/no_such_error"), 404, "not_found")


def test_bad_credentials_are_401_with_a_basic_challenge(client: falcon.testing.TestClient) -> None:
    for headers in (
        basic("alice", "wrong"),
        basic("nobody", "x"),
        bearer("chk_not-a-real-token"),
        bearer("not.a.jwt"),
        {"Authorization": "Basic %%%"},
        {"Authorization": "Negotiate abc"},
    ):
        # Even on endpoints anonymous callers may use: bad credentials are never anonymous.
        r = client.simulate_get("/api/v1/users/alice", headers=headers)
        assert_error(r, 401, "invalid_token")
        assert r.headers["www-authenticate"] == 'Basic realm="cargohold"'


def test_anonymous_lacking_access_is_401_and_a_user_403(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/api/v1/superuser/users/")
    body = assert_error(r, 401, "invalid_token")
    assert body["detail"] == "Requires authentication"
    assert r.headers["www-authenticate"] == 'Basic realm="cargohold"'
    r = client.simulate_get("/api/v1/superuser/users/", headers=basic("alice"))
    assert_error(r, 403, "insufficient_scope")
    assert "www-authenticate" not in r.headers


def test_repeated_failed_logins_are_throttled(client: falcon.testing.TestClient) -> None:
    statuses = [
        client.simulate_get("/api/v1/user/", headers=basic("bob", "wrong")).status_code
        for _ in range(30)
    ]
    assert statuses[0] == 401 and 429 in statuses
    r = client.simulate_get("/api/v1/user/", headers=basic("bob", "wrong"))
    assert_error(r, 429, "too_many_requests")
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"role": NaN}', "malformed JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
        (b"", "Missing JSON body"),
    ],
)
def test_malformed_bodies_are_400(
    client: falcon.testing.TestClient, container: Container, body: bytes, detail: str
) -> None:
    create_repository(container, "alice/app")
    r = client.simulate_put(
        "/api/v1/repository/alice/app/permissions/user/bob", body=body, headers=basic("alice")
    )
    assert detail in assert_error(r, 400, "invalid_request")["detail"]


def test_missing_fields_and_wrong_types_are_400_naming_the_field(
    client: falcon.testing.TestClient, container: Container
) -> None:
    create_repository(container, "alice/app")
    path = "/api/v1/repository/alice/app/permissions/user/bob"
    cases = [
        ({}, "missing required field 'role'"),
        ({"role": 3}, "'role' must be one of: read, write, admin"),
        ({"role": "owner"}, "'role' must be one of"),
        ({"role": None}, "missing required field 'role'"),
    ]
    for payload, detail in cases:
        r = send_json(client, "PUT", path, payload, basic("alice"))
        assert detail in assert_error(r, 400, "invalid_request")["detail"]


def test_oversized_bodies_are_413(client: falcon.testing.TestClient, container: Container) -> None:
    create_repository(container, "alice/app")
    r = client.simulate_put(
        "/api/v1/repository/alice/app/permissions/user/bob",
        body=b'{"role": "read", "pad": "' + b"x" * (1024 * 1024) + b'"}',
        headers=basic("alice"),
    )
    assert_error(r, 413, "request_too_large")


def test_unexpected_errors_are_500_in_the_same_shape(
    client: falcon.testing.TestClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(container.identity_queries, "account", broken)
    r = client.simulate_get("/api/v1/users/alice")
    body = assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text and body["detail"] == "Internal server error"


def test_a_forged_page_token_is_400_not_page_one(client: falcon.testing.TestClient) -> None:
    for token in ("%%%", "bm90IGpzb24", encode_page_token("repositories", "a")):
        r = client.simulate_get(
            "/api/v1/superuser/users/",
            params={"limit": "2", "next_page": token},
            headers=basic("admin"),
        )
        assert "next_page" in assert_error(r, 400, "invalid_request")["detail"]


def test_other_surfaces_keep_their_own_errors(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/v2/nothing/tags/list")
    assert "errors" in r.json
    assert client.simulate_get("/api/v1x").status_code == 404
