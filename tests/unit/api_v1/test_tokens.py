"""/api/v1 API tokens at Quay's app-token paths: minting, listing, revoking, scope rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.domain.identity import AccountName, ApiScope, RobotShortName
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    bearer,
    send_json,
)

PATH = "/api/v1/user/apptoken"


def when(rfc2822: str) -> datetime:
    """A Quay date (``-0000``: UTC, by RFC 2822 "no zone information") as aware UTC."""
    return parsedate_to_datetime(rfc2822).replace(tzinfo=UTC)


def mint(
    client: falcon.testing.TestClient, headers: dict[str, str], **payload: Any
) -> falcon.testing.Result:
    return send_json(
        client, "POST", PATH, {"title": "ci", "scopes": ["repo:read"], **payload}, headers
    )


def test_mint_with_a_password_shows_the_token_once(client: falcon.testing.TestClient) -> None:
    r = mint(client, basic("alice"), scopes=["repo:write", "user:read"], expiration_days=30)
    assert r.status_code == 201
    token = r.json["token"]
    assert set(token) == {
        "uuid",
        "title",
        "scopes",
        "last_accessed",
        "created",
        "expiration",
        "token_code",
    }
    assert token["title"] == "ci" and token["scopes"] == ["repo:write", "user:read"]
    created = when(token["created"])
    expiration = when(token["expiration"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    assert abs(expiration - created - timedelta(days=30)) < timedelta(minutes=1)
    code = token["token_code"]
    # The token works, capped by its scopes.
    me = client.simulate_get("/api/v1/user/", headers=bearer(code))
    assert me.status_code == 200 and me.json["username"] == "alice"
    # It is never shown again.
    listing = client.simulate_get(PATH, headers=basic("alice"))
    assert listing.status_code == 200 and code not in listing.text
    assert [t["uuid"] for t in listing.json["tokens"]] == [token["uuid"]]
    assert "token_code" not in listing.json["tokens"][0]
    one = client.simulate_get(f"{PATH}/{token['uuid']}", headers=basic("alice"))
    assert one.status_code == 200 and code not in one.text
    assert one.json["token"] == {k: v for k, v in token.items() if k != "token_code"}


def test_default_expiration_is_90_days(client: falcon.testing.TestClient) -> None:
    token = mint(client, basic("alice")).json["token"]
    lifetime = when(token["expiration"]) - when(token["created"])
    assert abs(lifetime - timedelta(days=90)) < timedelta(minutes=1)


def test_revoking_stops_the_token(client: falcon.testing.TestClient) -> None:
    token = mint(client, basic("alice"), scopes=["user:read"]).json["token"]
    headers = bearer(token["token_code"])
    assert client.simulate_get("/api/v1/user/", headers=headers).status_code == 200
    r = client.simulate_delete(f"{PATH}/{token['uuid']}", headers=basic("alice"))
    assert r.status_code == 204 and not r.content
    assert_error(client.simulate_get("/api/v1/user/", headers=headers), 401, "invalid_token")
    r = client.simulate_delete(f"{PATH}/{token['uuid']}", headers=basic("alice"))
    assert_error(r, 404, "not_found")
    assert client.simulate_get(PATH, headers=basic("alice")).json == {"tokens": []}


def test_tokens_are_their_owners_only(client: falcon.testing.TestClient) -> None:
    token = mint(client, basic("alice")).json["token"]
    assert_error(
        client.simulate_get(f"{PATH}/{token['uuid']}", headers=basic("bob")), 404, "not_found"
    )
    r = client.simulate_delete(f"{PATH}/{token['uuid']}", headers=basic("bob"))
    assert_error(r, 404, "not_found")
    assert client.simulate_get(PATH, headers=basic("bob")).json == {"tokens": []}
    assert_error(client.simulate_get(PATH), 401, "invalid_token")


def test_a_token_without_user_admin_cannot_mint(
    client: falcon.testing.TestClient, container: Container
) -> None:
    headers = api_token(container, "alice", ApiScope.REPO_ADMIN, ApiScope.USER_READ)
    assert_error(mint(client, headers), 403, "insufficient_scope")
    # Reading needs only user:read.
    assert client.simulate_get(PATH, headers=headers).status_code == 200


def test_a_token_cannot_mint_wider_scopes(
    client: falcon.testing.TestClient, container: Container
) -> None:
    headers = api_token(container, "alice", ApiScope.USER_ADMIN, ApiScope.REPO_WRITE)
    r = mint(client, headers, scopes=["repo:admin"])
    assert "repo:admin" in assert_error(r, 403, "insufficient_scope")["detail"]
    r = mint(client, headers, scopes=["repo:read", "org:admin"])
    assert "org:admin" in assert_error(r, 403, "insufficient_scope")["detail"]
    # Implied scopes count: repo:write holds repo:read; user:admin holds itself.
    r = mint(client, headers, scopes=["repo:read", "user:admin"])
    assert r.status_code == 201 and r.json["token"]["scopes"] == ["repo:read", "user:admin"]


def test_robots_and_anonymous_cannot_mint(
    client: falcon.testing.TestClient, container: Container
) -> None:
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    robot = container.identity.create_robot(AccountName("acme"), RobotShortName("ci"), SYSTEM)
    assert_error(mint(client, basic("acme+ci", robot)), 403, "insufficient_scope")
    assert_error(mint(client, {}), 401, "invalid_token")


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"scopes": None}, "missing required field 'scopes'"),
        ({"scopes": []}, "'scopes' must not be empty"),
        ({"scopes": "repo:read"}, "'scopes' must be a list of strings"),
        ({"scopes": ["repo:read", 3]}, "'scopes' must be a list of strings"),
        ({"scopes": ["repo:everything"]}, "unknown scope"),
        ({"title": None}, "missing required field 'title'"),
        ({"title": ["x"]}, "'title' must be a string"),
        ({"expiration_days": 0}, "'expiration_days' must be 1 to 365"),
        ({"expiration_days": 366}, "'expiration_days' must be 1 to 365"),
        ({"expiration_days": "5"}, "'expiration_days' must be an integer"),
        ({"expiration_days": True}, "'expiration_days' must be an integer"),
    ],
)
def test_mint_validation(
    client: falcon.testing.TestClient, payload: dict[str, Any], detail: str
) -> None:
    r = mint(client, basic("alice"), **payload)
    assert detail in assert_error(r, 400, "invalid_request")["detail"]
    assert client.simulate_get(PATH, headers=basic("alice")).json == {"tokens": []}
