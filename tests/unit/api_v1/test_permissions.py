"""/api/v1 repository permissions: users, robots and teams; transitive; scope capping."""

from __future__ import annotations

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
    RobotShortName,
    TeamName,
    TeamRole,
)
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    create_repository,
    make_container,
    send_json,
)

WEB = "/api/v1/repository/acme/web/permissions"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = make_container(tmp_path)
    try:
        org = AccountName("acme")
        c.identity.create_organization(org, AccountName("alice"), SYSTEM)
        c.identity.upsert_team(org, TeamName("dev"), TeamRole.MEMBER, SYSTEM)
        c.identity.add_team_member(org, TeamName("dev"), AccountName("bob"), SYSTEM)
        c.identity.create_robot(org, RobotShortName("builder"), SYSTEM)
        c.identity.create_organization(AccountName("other"), AccountName("carol"), SYSTEM)
        c.identity.create_robot(AccountName("other"), RobotShortName("builder"), SYSTEM)
        create_repository(c, "acme/web")
        yield c
    finally:
        c.close()


def put_role(
    client: falcon.testing.TestClient, path: str, role: str, headers: dict[str, str]
) -> falcon.testing.Result:
    return send_json(client, "PUT", path, {"role": role}, headers)


def test_user_and_robot_permissions(client: falcon.testing.TestClient) -> None:
    r = put_role(client, f"{WEB}/user/carol", "read", basic("alice"))
    assert r.status_code == 200
    assert r.json == {
        "role": "read",
        "name": "carol",
        "is_robot": False,
        "avatar": r.json["avatar"],
        "is_org_member": False,
    }
    r = put_role(client, f"{WEB}/user/acme+builder", "write", basic("alice"))
    assert r.status_code == 200 and r.json["is_robot"] is True and r.json["is_org_member"] is True
    assert r.json["avatar"]["kind"] == "robot"
    assert (
        put_role(client, f"{WEB}/user/bob", "admin", basic("alice")).json["is_org_member"] is True
    )
    r = client.simulate_get(f"{WEB}/user/", headers=basic("alice"))
    assert r.status_code == 200
    perms = r.json["permissions"]
    assert {name: p["role"] for name, p in perms.items()} == {
        "acme+builder": "write",
        "bob": "admin",
        "carol": "read",
    }
    r = client.simulate_get(f"{WEB}/user/carol", headers=basic("alice"))
    assert r.status_code == 200 and r.json == perms["carol"]
    # Changing a role, then revoking.
    assert put_role(client, f"{WEB}/user/carol", "write", basic("alice")).json["role"] == "write"
    assert client.simulate_get(f"{WEB}/user/carol", headers=basic("alice")).json["role"] == "write"
    assert client.simulate_delete(f"{WEB}/user/carol", headers=basic("alice")).status_code == 204
    assert_error(client.simulate_get(f"{WEB}/user/carol", headers=basic("alice")), 404, "not_found")
    assert_error(
        client.simulate_delete(f"{WEB}/user/carol", headers=basic("alice")), 404, "not_found"
    )


def test_granted_permissions_take_effect(client: falcon.testing.TestClient) -> None:
    assert_error(
        client.simulate_get("/api/v1/repository/acme/web", headers=basic("carol")),
        403,
        "insufficient_scope",
    )
    put_role(client, f"{WEB}/user/carol", "write", basic("alice"))
    r = client.simulate_get("/api/v1/repository/acme/web", headers=basic("carol"))
    assert r.status_code == 200 and r.json["can_write"] is True and r.json["can_admin"] is False


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("nobody", 404),  # no such user
        ("acme+nope", 404),  # no such robot
        ("NOT_VALID", 404),  # no user can have this name
        ("acme", 404),  # an organisation is not a user
        ("other+builder", 400),  # a robot of another namespace
    ],
)
def test_user_permission_errors(client: falcon.testing.TestClient, who: str, status: int) -> None:
    r = put_role(client, f"{WEB}/user/{who}", "read", basic("alice"))
    assert_error(r, status, "not_found" if status == 404 else "invalid_request")


def test_namespace_owner_cannot_be_granted(
    client: falcon.testing.TestClient, container: Container
) -> None:
    create_repository(container, "alice/app")
    path = "/api/v1/repository/alice/app/permissions/user/alice"
    r = put_role(client, path, "read", basic("alice"))
    assert "owner" in assert_error(r, 400, "invalid_request")["detail"]
    assert_error(client.simulate_delete(path, headers=basic("alice")), 400, "invalid_request")


def test_team_permissions(client: falcon.testing.TestClient) -> None:
    r = put_role(client, f"{WEB}/team/dev", "write", basic("alice"))
    assert r.status_code == 200
    assert r.json == {"role": "write", "name": "dev", "avatar": r.json["avatar"]}
    r = client.simulate_get(f"{WEB}/team/", headers=basic("alice"))
    assert r.status_code == 200 and list(r.json["permissions"]) == ["dev"]
    assert r.json["permissions"]["dev"]["role"] == "write"
    r = client.simulate_get(f"{WEB}/team/dev", headers=basic("alice"))
    assert r.status_code == 200 and r.json == {"role": "write"}
    # Bob is in dev, so he may now push.
    r = client.simulate_get("/api/v1/repository/acme/web", headers=basic("bob"))
    assert r.status_code == 200 and r.json["can_write"] is True
    assert client.simulate_delete(f"{WEB}/team/dev", headers=basic("alice")).status_code == 204
    assert_error(client.simulate_get(f"{WEB}/team/dev", headers=basic("alice")), 404, "not_found")
    assert_error(
        client.simulate_delete(f"{WEB}/team/dev", headers=basic("alice")), 404, "not_found"
    )
    assert_error(put_role(client, f"{WEB}/team/nope", "read", basic("alice")), 404, "not_found")
    assert_error(
        put_role(client, f"{WEB}/team/dev", "boss", basic("alice")), 400, "invalid_request"
    )


def test_transitive_permissions(client: falcon.testing.TestClient) -> None:
    put_role(client, f"{WEB}/team/dev", "read", basic("alice"))
    put_role(client, f"{WEB}/user/bob", "write", basic("alice"))
    r = client.simulate_get(f"{WEB}/user/bob/transitive", headers=basic("alice"))
    assert r.status_code == 200
    assert sorted(p["role"] for p in r.json["permissions"]) == ["read", "write"]
    assert_error(
        client.simulate_get(f"{WEB}/user/carol/transitive", headers=basic("alice")),
        404,
        "not_found",
    )
    assert_error(
        client.simulate_get(f"{WEB}/user/nobody/transitive", headers=basic("alice")),
        404,
        "not_found",
    )


def test_permissions_need_repository_admin_and_repo_admin_scope(
    client: falcon.testing.TestClient, container: Container
) -> None:
    path = f"{WEB}/user/carol"
    # A repo:read token of the org's owner cannot PUT a permission.
    for scopes in ((ApiScope.REPO_READ,), (ApiScope.REPO_WRITE, ApiScope.ORG_ADMIN)):
        headers = api_token(container, "alice", *scopes)
        assert_error(put_role(client, path, "read", headers), 403, "insufficient_scope")
        assert_error(
            client.simulate_get(f"{WEB}/user/", headers=headers), 403, "insufficient_scope"
        )
    assert container.identity_queries.repository_grants("acme/web") == []
    # A user with write on the repository is not its admin either.
    put_role(client, f"{WEB}/user/bob", "write", basic("alice"))
    assert_error(put_role(client, path, "read", basic("bob")), 403, "insufficient_scope")
    assert_error(put_role(client, path, "read", {}), 401, "invalid_token")
    headers = api_token(container, "alice", ApiScope.REPO_ADMIN)
    assert put_role(client, path, "read", headers).status_code == 200
    # An admin grant makes bob an admin.
    put_role(client, f"{WEB}/user/bob", "admin", basic("alice"))
    assert put_role(client, path, "write", basic("bob")).status_code == 200
    assert (
        dict(container.identity_queries.repository_grants("acme/web"))[Principal.user("carol")]
        is RepositoryRole.WRITE
    )


def test_permission_checks_come_before_existence(client: falcon.testing.TestClient) -> None:
    path = "/api/v1/repository/acme/missing/permissions/user/"
    assert_error(client.simulate_get(path, headers=basic("carol")), 403, "insufficient_scope")
    assert_error(client.simulate_get(path), 401, "invalid_token")
    assert_error(client.simulate_get(path, headers=basic("alice")), 404, "not_found")
