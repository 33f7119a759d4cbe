"""/api/v1 users: /user/, /users/{u}, and the superuser's /superuser/users/."""

from __future__ import annotations

import re

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.domain.identity import AccountName, ApiScope, RobotShortName
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    send_json,
)

RFC2822 = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}")


def test_current_user(client: falcon.testing.TestClient, container: Container) -> None:
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    r = client.simulate_get("/api/v1/user/", headers=basic("alice"))
    assert r.status_code == 200
    body = r.json
    assert body["anonymous"] is False and body["username"] == "alice"
    assert body["email"] == "alice@example.com" and body["can_create_repo"] is True
    assert set(body["avatar"]) == {"name", "hash", "color", "kind"}
    assert body["avatar"]["kind"] == "user" and body["avatar"]["name"] == "alice"
    assert re.fullmatch(r"#[0-9a-f]{6}", body["avatar"]["color"])
    assert body["organizations"] == [
        {
            "name": "acme",
            "avatar": body["organizations"][0]["avatar"],
            "can_create_repo": True,
            "public": False,
            "is_org_admin": True,
            "preferred_namespace": False,
        }
    ]
    assert "super_user" not in body
    admin = client.simulate_get("/api/v1/user/", headers=basic("admin")).json
    assert admin["super_user"] is True and admin["organizations"] == []


def test_current_user_needs_a_user_with_user_read(
    client: falcon.testing.TestClient, container: Container
) -> None:
    r = client.simulate_get("/api/v1/user/")
    assert_error(r, 401, "invalid_token")
    r = client.simulate_get(
        "/api/v1/user/", headers=api_token(container, "alice", ApiScope.REPO_READ)
    )
    assert_error(r, 403, "insufficient_scope")
    r = client.simulate_get(
        "/api/v1/user/", headers=api_token(container, "alice", ApiScope.USER_READ)
    )
    assert r.status_code == 200 and r.json["username"] == "alice"
    # user:admin implies user:read; a token without repo:create cannot create repos.
    r = client.simulate_get(
        "/api/v1/user/", headers=api_token(container, "alice", ApiScope.USER_ADMIN)
    )
    assert r.status_code == 200 and r.json["can_create_repo"] is False
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    token = container.identity.create_robot(AccountName("acme"), RobotShortName("ci"), SYSTEM)
    r = client.simulate_get("/api/v1/user/", headers=basic("acme+ci", token))
    assert_error(r, 403, "insufficient_scope")


def test_public_user_view(client: falcon.testing.TestClient, container: Container) -> None:
    r = client.simulate_get("/api/v1/users/bob")
    assert r.status_code == 200
    assert r.json == {"anonymous": False, "username": "bob", "avatar": r.json["avatar"]}
    assert r.json["avatar"]["name"] == "bob"
    # The avatar is a function of the name: the same on every call, different for others.
    again = client.simulate_get("/api/v1/users/bob", headers=basic("alice")).json
    assert again["avatar"] == r.json["avatar"]
    assert (
        client.simulate_get("/api/v1/users/carol").json["avatar"]["hash"]
        != r.json["avatar"]["hash"]
    )
    assert_error(client.simulate_get("/api/v1/users/nobody"), 404, "not_found")
    assert_error(client.simulate_get("/api/v1/users/NOT_A_NAME"), 404, "not_found")
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    assert_error(client.simulate_get("/api/v1/users/acme"), 404, "not_found")


def test_superuser_lists_every_user(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/api/v1/superuser/users/", headers=basic("admin"))
    assert r.status_code == 200 and "next_page" not in r.json
    users = r.json["users"]
    assert [u["username"] for u in users] == ["admin", "alice", "bob", "carol"]
    alice = users[1]
    assert alice == {
        "kind": "user",
        "name": "alice",
        "username": "alice",
        "email": "alice@example.com",
        "verified": True,
        "avatar": alice["avatar"],
        "super_user": False,
        "global_readonly_super_user": False,
        "enabled": True,
    }
    assert users[0]["super_user"] is True


def test_superuser_user_pages_round_trip(client: falcon.testing.TestClient) -> None:
    seen: list[str] = []
    params = {"limit": "3"}
    for _ in range(5):
        r = client.simulate_get("/api/v1/superuser/users/", params=params, headers=basic("admin"))
        assert r.status_code == 200
        seen += [u["username"] for u in r.json["users"]]
        if "next_page" not in r.json:
            break
        assert len(r.json["users"]) == 3
        params = {"limit": "3", "next_page": r.json["next_page"]}
    assert seen == ["admin", "alice", "bob", "carol"]
    for limit in ("0", "101", "x"):
        r = client.simulate_get(
            "/api/v1/superuser/users/", params={"limit": limit}, headers=basic("admin")
        )
        assert_error(r, 400, "invalid_request")


def test_superuser_endpoints_need_the_super_user_scope(
    client: falcon.testing.TestClient, container: Container
) -> None:
    headers = api_token(container, "admin", ApiScope.USER_ADMIN, ApiScope.ORG_ADMIN)
    assert_error(
        client.simulate_get("/api/v1/superuser/users/", headers=headers), 403, "insufficient_scope"
    )
    headers = api_token(container, "admin", ApiScope.SUPER_USER)
    assert client.simulate_get("/api/v1/superuser/users/", headers=headers).status_code == 200
    # The scope on a non-superuser's token gives nothing.
    headers = api_token(container, "alice", ApiScope.SUPER_USER)
    r = client.simulate_get("/api/v1/superuser/users/alice", headers=headers)
    assert_error(r, 403, "insufficient_scope")


def test_superuser_creates_a_user_with_a_generated_password(
    client: falcon.testing.TestClient,
) -> None:
    r = send_json(
        client,
        "POST",
        "/api/v1/superuser/users/",
        {"username": "dave", "email": "d@x.io"},
        basic("admin"),
    )
    assert r.status_code == 200
    assert r.json["username"] == "dave" and r.json["email"] == "d@x.io"
    password = r.json["password"]
    assert re.fullmatch(r"[A-Z0-9]{32}", password)
    r = client.simulate_get("/api/v1/user/", headers=basic("dave", password))
    assert r.status_code == 200 and r.json["username"] == "dave"
    # The password is never shown again.
    r = client.simulate_get("/api/v1/superuser/users/dave", headers=basic("admin"))
    assert password not in r.text


def test_superuser_creates_a_user_with_a_given_password(client: falcon.testing.TestClient) -> None:
    r = send_json(
        client,
        "POST",
        "/api/v1/superuser/users/",
        {"username": "erin", "password": "erin-pw-1"},
        basic("admin"),
    )
    assert r.status_code == 200 and "password" not in r.json and r.json["email"] == ""
    assert (
        client.simulate_get("/api/v1/user/", headers=basic("erin", "erin-pw-1")).status_code == 200
    )


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"username": "alice"}, "already exists"),
        ({}, "missing required field 'username'"),
        ({"username": 7}, "'username' must be a string"),
        ({"username": "Not Valid"}, "invalid account name"),
        ({"username": "frank", "email": "no-at-sign"}, "e-mail"),
        ({"username": "frank", "password": ""}, "password"),
    ],
)
def test_superuser_user_creation_errors(
    client: falcon.testing.TestClient, payload: dict[str, object], detail: str
) -> None:
    r = send_json(client, "POST", "/api/v1/superuser/users/", payload, basic("admin"))
    assert detail in assert_error(r, 400, "invalid_request")["detail"]


def test_superuser_changes_password_and_superuser_flag(client: falcon.testing.TestClient) -> None:
    path = "/api/v1/superuser/users/bob"
    r = send_json(
        client, "PUT", path, {"password": "bob-new-pw", "superuser": True}, basic("admin")
    )
    assert r.status_code == 200 and r.json["super_user"] is True
    assert client.simulate_get(path, headers=basic("admin")).json["super_user"] is True
    assert client.simulate_get("/api/v1/user/", headers=basic("bob")).status_code == 401
    bob = basic("bob", "bob-new-pw")
    assert client.simulate_get("/api/v1/superuser/users/", headers=bob).status_code == 200
    r = send_json(client, "PUT", path, {"superuser": False}, basic("admin"))
    assert r.json["super_user"] is False
    assert_error(
        client.simulate_get("/api/v1/superuser/users/", headers=bob), 403, "insufficient_scope"
    )


def test_superuser_user_put_errors(client: falcon.testing.TestClient) -> None:
    path = "/api/v1/superuser/users/bob"
    for payload in ({"email": "b@x.io"}, {"enabled": False}, {"superuser": "yes"}, {"password": 1}):
        assert_error(
            send_json(client, "PUT", path, payload, basic("admin")), 400, "invalid_request"
        )
    r = send_json(client, "PUT", "/api/v1/superuser/users/nobody", {}, basic("admin"))
    assert_error(r, 404, "not_found")
    assert_error(
        client.simulate_get("/api/v1/superuser/users/nobody", headers=basic("admin")),
        404,
        "not_found",
    )
    r = send_json(client, "PUT", path, {"superuser": True}, basic("alice"))
    assert_error(r, 403, "insufficient_scope")


def test_there_is_no_user_deletion(client: falcon.testing.TestClient) -> None:
    r = client.simulate_delete("/api/v1/superuser/users/bob", headers=basic("admin"))
    assert_error(r, 405, "method_not_allowed")
