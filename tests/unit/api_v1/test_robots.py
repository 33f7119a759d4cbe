"""/api/v1 robots of an organisation, and its default permissions (prototypes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    Principal,
    RepositoryRole,
    TeamName,
    TeamRole,
)
from cargohold.http.api_v1.prototypes import PROTOTYPE_NAMESPACE
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    create_repository,
    make_container,
    send_json,
)

ORG = "/api/v1/organization/acme"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = make_container(tmp_path)
    try:
        c.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
        c.identity.upsert_team(AccountName("acme"), TeamName("dev"), TeamRole.MEMBER, SYSTEM)
        c.identity.add_team_member(AccountName("acme"), TeamName("dev"), AccountName("bob"), SYSTEM)
        yield c
    finally:
        c.close()


# -- robots ---------------------------------------------------------------------------------


def test_a_robot_token_is_shown_once(client: falcon.testing.TestClient) -> None:
    r = send_json(client, "PUT", f"{ORG}/robots/builder", {"description": "CI"}, basic("alice"))
    assert r.status_code == 201
    assert r.json["name"] == "acme+builder" and r.json["description"] == "CI"
    assert r.json["last_accessed"] is None and r.json["unstructured_metadata"] == {}
    assert r.json["created"].endswith("-0000")
    token = r.json["token"]
    # The token works as the robot's password.
    create = send_json(
        client,
        "POST",
        "/api/v1/repository",
        {"repository": "pub", "visibility": "public", "namespace": "acme"},
        basic("alice"),
    )
    assert create.status_code == 201
    r = client.simulate_get("/api/v1/repository/acme/pub", headers=basic("acme+builder", token))
    assert r.status_code == 200
    # Later GETs never contain it.
    one = client.simulate_get(f"{ORG}/robots/builder", headers=basic("alice"))
    assert one.status_code == 200 and "token" not in one.json and token not in one.text
    listing = client.simulate_get(
        f"{ORG}/robots", params={"token": "true", "permissions": "true"}, headers=basic("alice")
    )
    assert listing.status_code == 200 and token not in listing.text
    assert [b["name"] for b in listing.json["robots"]] == ["acme+builder"]
    assert "token" not in listing.json["robots"][0]


def test_regenerate_replaces_the_token(client: falcon.testing.TestClient) -> None:
    old = client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice")).json["token"]
    r = client.simulate_post(f"{ORG}/robots/builder/regenerate", headers=basic("alice"))
    assert r.status_code == 200 and r.json["name"] == "acme+builder"
    new = r.json["token"]
    assert new != old
    r = client.simulate_get("/api/v1/users/alice", headers=basic("acme+builder", new))
    assert r.status_code == 200
    r = client.simulate_get("/api/v1/users/alice", headers=basic("acme+builder", old))
    assert_error(r, 401, "invalid_token")


def test_robot_permissions_and_listing_with_permissions(
    client: falcon.testing.TestClient, container: Container
) -> None:
    client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice"))
    repo = create_repository(container, "acme/web")
    container.registry.grant(repo, Principal.robot("acme", "builder"), RepositoryRole.WRITE, SYSTEM)
    r = client.simulate_get(f"{ORG}/robots/builder/permissions", headers=basic("alice"))
    assert r.status_code == 200
    assert r.json == {
        "permissions": [{"repository": {"name": "web", "is_public": False}, "role": "write"}]
    }
    r = client.simulate_get(f"{ORG}/robots", params={"permissions": "true"}, headers=basic("alice"))
    robot = r.json["robots"][0]
    assert robot["repositories"] == ["web"] and robot["teams"] == []
    assert "unstructured_metadata" not in robot
    # A member may list robots, but sees no permissions.
    r = client.simulate_get(f"{ORG}/robots", params={"permissions": "true"}, headers=basic("bob"))
    assert r.status_code == 200 and "repositories" not in r.json["robots"][0]
    assert_error(
        client.simulate_get(f"{ORG}/robots/builder/permissions", headers=basic("bob")),
        403,
        "insufficient_scope",
    )


def test_robot_deletion(client: falcon.testing.TestClient, container: Container) -> None:
    token = client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice")).json["token"]
    repo = create_repository(container, "acme/web")
    container.registry.grant(repo, Principal.robot("acme", "builder"), RepositoryRole.READ, SYSTEM)
    r = client.simulate_delete(f"{ORG}/robots/builder", headers=basic("alice"))
    assert r.status_code == 204
    assert container.identity_queries.repository_grants("acme/web") == []
    assert_error(
        client.simulate_get(f"{ORG}/robots/builder", headers=basic("alice")), 404, "not_found"
    )
    assert_error(
        client.simulate_delete(f"{ORG}/robots/builder", headers=basic("alice")), 404, "not_found"
    )
    r = client.simulate_get("/api/v1/users/alice", headers=basic("acme+builder", token))
    assert_error(r, 401, "invalid_token")


def test_robot_errors(client: falcon.testing.TestClient, container: Container) -> None:
    client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice"))
    r = client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice"))
    assert "existing robot" in assert_error(r, 400, "invalid_request")["detail"]
    for short in ("Bad", "a", "with-dash"):
        assert_error(
            client.simulate_put(f"{ORG}/robots/{short}", headers=basic("alice")),
            400,
            "invalid_request",
        )
    for path in ("robots/nope", "robots/Bad", "robots/nope/permissions"):
        assert_error(client.simulate_get(f"{ORG}/{path}", headers=basic("alice")), 404, "not_found")
    r = client.simulate_post(f"{ORG}/robots/nope/regenerate", headers=basic("alice"))
    assert_error(r, 404, "not_found")
    r = send_json(
        client, "PUT", f"{ORG}/robots/meta", {"unstructured_metadata": {"a": 1}}, basic("alice")
    )
    assert_error(r, 400, "invalid_request")
    r = send_json(client, "PUT", f"{ORG}/robots/meta", {"description": 1}, basic("alice"))
    assert_error(r, 400, "invalid_request")
    assert_error(
        client.simulate_get("/api/v1/organization/nope/robots", headers=basic("alice")),
        404,
        "not_found",
    )


def test_robots_need_the_right_caller(
    client: falcon.testing.TestClient, container: Container
) -> None:
    assert_error(
        client.simulate_put(f"{ORG}/robots/builder", headers=basic("bob")),
        403,
        "insufficient_scope",
    )
    assert_error(
        client.simulate_get(f"{ORG}/robots", headers=basic("carol")), 403, "insufficient_scope"
    )
    assert_error(client.simulate_get(f"{ORG}/robots"), 401, "invalid_token")
    headers = api_token(container, "alice", ApiScope.REPO_ADMIN, ApiScope.USER_ADMIN)
    assert_error(
        client.simulate_put(f"{ORG}/robots/builder", headers=headers), 403, "insufficient_scope"
    )
    headers = api_token(container, "alice", ApiScope.ORG_ADMIN)
    assert client.simulate_put(f"{ORG}/robots/builder", headers=headers).status_code == 201


# -- prototypes -----------------------------------------------------------------------------


def test_prototypes_round_trip(client: falcon.testing.TestClient, container: Container) -> None:
    client.simulate_put(f"{ORG}/robots/builder", headers=basic("alice"))
    path = f"{ORG}/prototypes"
    created = []
    for delegate, role in (
        ({"name": "bob", "kind": "user"}, "read"),
        ({"name": "dev", "kind": "team"}, "write"),
        ({"name": "acme+builder", "kind": "user"}, "admin"),
    ):
        r = send_json(client, "POST", path, {"role": role, "delegate": delegate}, basic("alice"))
        assert r.status_code == 200, r.text
        assert r.json["role"] == role and r.json["activating_user"] is None
        assert r.json["delegate"]["name"] == delegate["name"]
        created.append(r.json)
    assert created[0]["delegate"]["is_robot"] is False
    assert created[0]["delegate"]["is_org_member"] is True
    assert created[1]["delegate"] == {
        "name": "dev",
        "kind": "team",
        "avatar": created[1]["delegate"]["avatar"],
    }
    assert created[2]["delegate"]["is_robot"] is True
    assert created[0]["id"] == str(uuid.uuid5(PROTOTYPE_NAMESPACE, "user:bob"))
    listing = client.simulate_get(path, headers=basic("alice")).json["prototypes"]
    assert sorted(p["id"] for p in listing) == sorted(p["id"] for p in created)
    # A new repository starts with the defaults.
    r = send_json(
        client,
        "POST",
        "/api/v1/repository",
        {"repository": "web", "visibility": "private", "namespace": "acme"},
        basic("alice"),
    )
    assert r.status_code == 201
    grants = dict(container.identity_queries.repository_grants("acme/web"))
    assert grants[Principal.user("bob")] is RepositoryRole.READ
    assert grants[Principal.team("acme", "dev")] is RepositoryRole.WRITE
    assert grants[Principal.robot("acme", "builder")] is RepositoryRole.ADMIN
    # PUT changes the role, DELETE removes it.
    bob_id = created[0]["id"]
    r = send_json(client, "PUT", f"{path}/{bob_id}", {"role": "write"}, basic("alice"))
    assert r.status_code == 200 and r.json["role"] == "write" and r.json["id"] == bob_id
    assert (
        dict(container.identity_queries.default_permissions("acme"))[Principal.user("bob")]
        is RepositoryRole.WRITE
    )
    assert client.simulate_delete(f"{path}/{bob_id}", headers=basic("alice")).status_code == 204
    assert_error(
        client.simulate_delete(f"{path}/{bob_id}", headers=basic("alice")), 404, "not_found"
    )
    r = send_json(client, "PUT", f"{path}/{bob_id}", {"role": "read"}, basic("alice"))
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (
            {
                "role": "read",
                "delegate": {"name": "bob", "kind": "user"},
                "activating_user": {"name": "alice"},
            },
            400,
        ),
        ({"role": "read"}, 400),
        ({"role": "read", "delegate": "bob"}, 400),
        ({"role": "read", "delegate": {"name": "bob"}}, 400),
        ({"role": "read", "delegate": {"name": "bob", "kind": "robot"}}, 400),
        ({"role": "own", "delegate": {"name": "bob", "kind": "user"}}, 400),
        ({"role": "read", "delegate": {"name": "nobody", "kind": "user"}}, 404),
        ({"role": "read", "delegate": {"name": "nope", "kind": "team"}}, 404),
        ({"role": "read", "delegate": {"name": "acme+nope", "kind": "user"}}, 404),
        ({"role": "read", "delegate": {"name": "NOT VALID", "kind": "user"}}, 404),
    ],
)
def test_prototype_errors(
    client: falcon.testing.TestClient, payload: dict[str, object], status: int
) -> None:
    r = send_json(client, "POST", f"{ORG}/prototypes", payload, basic("alice"))
    assert_error(r, status, "invalid_request" if status == 400 else "not_found")
    assert client.simulate_get(f"{ORG}/prototypes", headers=basic("alice")).json == {
        "prototypes": []
    }


def test_prototypes_need_an_org_admin(client: falcon.testing.TestClient) -> None:
    payload = {"role": "read", "delegate": {"name": "carol", "kind": "user"}}
    assert_error(
        send_json(client, "POST", f"{ORG}/prototypes", payload, basic("bob")),
        403,
        "insufficient_scope",
    )
    assert_error(client.simulate_get(f"{ORG}/prototypes"), 401, "invalid_token")
