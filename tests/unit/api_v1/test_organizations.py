"""/api/v1 organisations, their members and their teams."""

from __future__ import annotations

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
    send_json,
)

ORG = "/api/v1/organization/acme"


@pytest.fixture
def acme(client: falcon.testing.TestClient) -> str:
    """Organisation ``acme``, created by alice through the API."""
    r = send_json(client, "POST", "/api/v1/organization/", {"name": "acme"}, basic("alice"))
    assert r.status_code == 201 and r.json == "Created"
    return "acme"


# -- organisations --------------------------------------------------------------------------


def test_the_creator_owns_the_new_organization(
    client: falcon.testing.TestClient, acme: str
) -> None:
    r = client.simulate_get(ORG, headers=basic("alice"))
    assert r.status_code == 200
    body = r.json
    assert body["name"] == "acme" and body["avatar"]["kind"] == "org"
    assert body["is_admin"] is True and body["is_member"] is True
    assert body["ordered_teams"] == ["owners"]
    assert body["teams"]["owners"] == {
        "name": "owners",
        "description": "",
        "role": "admin",
        "avatar": body["teams"]["owners"]["avatar"],
        "can_view": True,
        "repo_count": 0,
        "member_count": 1,
        "is_synced": False,
    }
    assert body["is_free_account"] is True and body["invoice_email"] is False


def test_outsiders_see_the_public_view(client: falcon.testing.TestClient, acme: str) -> None:
    for headers in ({}, basic("bob")):
        r = client.simulate_get(ORG, headers=headers)
        assert r.status_code == 200
        assert r.json == {
            "name": "acme",
            "email": "",
            "avatar": r.json["avatar"],
            "is_admin": False,
            "is_member": False,
        }
    assert_error(client.simulate_get("/api/v1/organization/nope"), 404, "not_found")
    # A user is not an organisation.
    assert_error(client.simulate_get("/api/v1/organization/bob"), 404, "not_found")


def test_members_see_teams_but_not_admin_fields(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    container.identity.upsert_team(AccountName("acme"), TeamName("dev"), TeamRole.MEMBER, SYSTEM)
    container.identity.add_team_member(
        AccountName("acme"), TeamName("dev"), AccountName("bob"), SYSTEM
    )
    body = client.simulate_get(ORG, headers=basic("bob")).json
    assert body["is_member"] is True and body["is_admin"] is False
    assert body["ordered_teams"] == ["dev", "owners"]
    assert body["teams"]["dev"]["can_view"] is True
    assert body["teams"]["owners"]["can_view"] is False
    assert "is_free_account" not in body
    # A token without org:admin or user:read does not make its owner a member here.
    headers = api_token(container, "bob", ApiScope.REPO_READ)
    assert "teams" not in client.simulate_get(ORG, headers=headers).json


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"name": "bob"}, "already exists"),
        ({"name": "Bad Name"}, "invalid account name"),
        ({}, "missing required field 'name'"),
        ({"name": "ok-org", "email": 5}, "'email' must be a string"),
    ],
)
def test_organization_creation_errors(
    client: falcon.testing.TestClient, payload: dict[str, object], detail: str
) -> None:
    r = send_json(client, "POST", "/api/v1/organization/", payload, basic("alice"))
    assert detail in assert_error(r, 400, "invalid_request")["detail"]


def test_organization_creation_needs_user_admin(
    client: falcon.testing.TestClient, container: Container
) -> None:
    payload = {"name": "acme"}
    headers = api_token(container, "alice", ApiScope.ORG_ADMIN, ApiScope.REPO_CREATE)
    r = send_json(client, "POST", "/api/v1/organization/", payload, headers)
    assert_error(r, 403, "insufficient_scope")
    assert_error(send_json(client, "POST", "/api/v1/organization/", payload), 401, "invalid_token")
    headers = api_token(container, "alice", ApiScope.USER_ADMIN)
    assert send_json(client, "POST", "/api/v1/organization/", payload, headers).status_code == 201


# -- members --------------------------------------------------------------------------------


def test_members_list_and_view(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    org = AccountName("acme")
    container.identity.upsert_team(org, TeamName("dev"), TeamRole.MEMBER, SYSTEM)
    container.identity.add_team_member(org, TeamName("dev"), AccountName("bob"), SYSTEM)
    repo = create_repository(container, "acme/web")
    container.registry.grant(repo, Principal.user("bob"), RepositoryRole.WRITE, SYSTEM)
    r = client.simulate_get(f"{ORG}/members", headers=basic("alice"))
    assert r.status_code == 200
    members = {m["name"]: m for m in r.json["members"]}
    assert set(members) == {"alice", "bob"}
    assert [t["name"] for t in members["bob"]["teams"]] == ["dev"]
    assert members["bob"]["repositories"] == ["web"] and members["bob"]["kind"] == "user"
    assert [t["name"] for t in members["alice"]["teams"]] == ["owners"]
    r = client.simulate_get(f"{ORG}/members/bob", headers=basic("alice"))
    assert r.status_code == 200 and r.json == members["bob"]
    assert_error(
        client.simulate_get(f"{ORG}/members/carol", headers=basic("alice")), 404, "not_found"
    )
    # Robots are members for GET, as in Quay.
    container.identity.create_robot(org, RobotShortName("ci"), SYSTEM)
    r = client.simulate_get(f"{ORG}/members/acme+ci", headers=basic("alice"))
    assert r.status_code == 200 and r.json["kind"] == "robot"
    r = client.simulate_delete(f"{ORG}/members/acme+ci", headers=basic("alice"))
    assert_error(r, 400, "invalid_request")


def test_members_need_an_org_admin(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    container.identity.upsert_team(AccountName("acme"), TeamName("dev"), TeamRole.MEMBER, SYSTEM)
    container.identity.add_team_member(
        AccountName("acme"), TeamName("dev"), AccountName("bob"), SYSTEM
    )
    assert_error(
        client.simulate_get(f"{ORG}/members", headers=basic("bob")), 403, "insufficient_scope"
    )
    assert_error(client.simulate_get(f"{ORG}/members"), 401, "invalid_token")
    headers = api_token(container, "alice", ApiScope.USER_ADMIN, ApiScope.REPO_ADMIN)
    r = client.simulate_get(f"{ORG}/members", headers=headers)
    assert_error(r, 403, "insufficient_scope")
    headers = api_token(container, "alice", ApiScope.ORG_ADMIN)
    assert client.simulate_get(f"{ORG}/members", headers=headers).status_code == 200
    # A superuser administers every organisation.
    assert client.simulate_get(f"{ORG}/members", headers=basic("admin")).status_code == 200
    assert_error(
        client.simulate_get("/api/v1/organization/nope/members", headers=basic("admin")),
        404,
        "not_found",
    )


def test_removing_a_member(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    org = AccountName("acme")
    container.identity.upsert_team(org, TeamName("dev"), TeamRole.MEMBER, SYSTEM)
    container.identity.add_team_member(org, TeamName("dev"), AccountName("bob"), SYSTEM)
    repo = create_repository(container, "acme/web")
    container.registry.grant(repo, Principal.user("bob"), RepositoryRole.WRITE, SYSTEM)
    r = client.simulate_delete(f"{ORG}/members/bob", headers=basic("alice"))
    assert r.status_code == 204
    assert container.identity_queries.org_members("acme") == ["alice"]
    assert container.identity_queries.grants_of(Principal.user("bob")) == []
    assert_error(
        client.simulate_delete(f"{ORG}/members/bob", headers=basic("alice")), 404, "not_found"
    )
    # The last owner cannot go.
    r = client.simulate_delete(f"{ORG}/members/alice", headers=basic("alice"))
    assert "owners" in assert_error(r, 400, "invalid_request")["detail"]


# -- teams ----------------------------------------------------------------------------------


def test_team_upsert(client: falcon.testing.TestClient, acme: str) -> None:
    path = f"{ORG}/team/dev"
    r = send_json(client, "PUT", path, {"role": "member", "description": "devs"}, basic("alice"))
    assert r.status_code == 200
    assert r.json == {
        "name": "dev",
        "description": "devs",
        "can_view": True,
        "role": "member",
        "avatar": r.json["avatar"],
        "new_team": True,
    }
    assert r.json["avatar"]["kind"] == "team"
    r = send_json(client, "PUT", path, {"role": "creator"}, basic("alice"))
    assert r.status_code == 200 and r.json["new_team"] is False and r.json["role"] == "creator"
    assert r.json["description"] == "devs"
    # A description given replaces the old one; none keeps it.
    r = send_json(client, "PUT", path, {"role": "member", "description": "devs"}, basic("alice"))
    assert r.status_code == 200 and r.json["role"] == "member"
    r = send_json(client, "PUT", path, {"role": "member", "description": "new"}, basic("alice"))
    assert r.status_code == 200 and r.json["description"] == "new"
    team = client.simulate_get(ORG, headers=basic("alice")).json["teams"]["dev"]
    assert team["role"] == "member" and team["description"] == "new"
    r = send_json(client, "PUT", f"{ORG}/team/owners", {"role": "member"}, basic("alice"))
    assert "owners" in assert_error(r, 400, "invalid_request")["detail"]


@pytest.mark.parametrize(
    ("team", "payload"),
    [
        ("dev", {}),
        ("dev", {"role": "boss"}),
        ("dev", {"role": "member", "description": 1}),
        ("Not_Valid", {"role": "member"}),
    ],
)
def test_team_upsert_errors(
    client: falcon.testing.TestClient, acme: str, team: str, payload: dict[str, object]
) -> None:
    r = send_json(client, "PUT", f"{ORG}/team/{team}", payload, basic("alice"))
    assert_error(r, 400, "invalid_request")


def test_teams_need_org_admin_and_its_scope(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    payload = {"role": "member"}
    path = f"{ORG}/team/dev"
    # Alice owns acme, but this token of hers lacks org:admin.
    headers = api_token(container, "alice", ApiScope.REPO_ADMIN, ApiScope.USER_ADMIN)
    assert_error(send_json(client, "PUT", path, payload, headers), 403, "insufficient_scope")
    assert_error(send_json(client, "PUT", path, payload, basic("bob")), 403, "insufficient_scope")
    assert_error(send_json(client, "PUT", path, payload), 401, "invalid_token")
    assert container.identity_queries.team("acme", "dev") is None
    headers = api_token(container, "alice", ApiScope.ORG_ADMIN)
    assert send_json(client, "PUT", path, payload, headers).status_code == 200


def test_team_members(client: falcon.testing.TestClient, container: Container, acme: str) -> None:
    send_json(client, "PUT", f"{ORG}/team/dev", {"role": "member"}, basic("alice"))
    r = client.simulate_put(f"{ORG}/team/dev/members/bob", headers=basic("alice"))
    assert r.status_code == 200
    assert r.json == {
        "name": "bob",
        "kind": "user",
        "is_robot": False,
        "avatar": r.json["avatar"],
        "invited": False,
    }
    r = client.simulate_get(f"{ORG}/team/dev/members", headers=basic("alice"))
    assert r.status_code == 200
    assert r.json["name"] == "dev" and r.json["can_edit"] is True
    assert [m["name"] for m in r.json["members"]] == ["bob"]
    # A team member may look; the answer says they cannot edit.
    r = client.simulate_get(f"{ORG}/team/dev/members", headers=basic("bob"))
    assert r.status_code == 200 and r.json["can_edit"] is False
    assert_error(
        client.simulate_get(f"{ORG}/team/dev/members", headers=basic("carol")),
        403,
        "insufficient_scope",
    )
    assert_error(
        client.simulate_get(f"{ORG}/team/owners/members", headers=basic("bob")),
        403,
        "insufficient_scope",
    )
    assert_error(
        client.simulate_get(f"{ORG}/team/nope/members", headers=basic("alice")), 404, "not_found"
    )
    r = client.simulate_delete(f"{ORG}/team/dev/members/bob", headers=basic("alice"))
    assert r.status_code == 204
    assert container.identity_queries.team_members("acme", "dev") == []
    r = client.simulate_delete(f"{ORG}/team/dev/members/bob", headers=basic("alice"))
    assert_error(r, 404, "not_found")


def test_team_member_errors(client: falcon.testing.TestClient, acme: str) -> None:
    send_json(client, "PUT", f"{ORG}/team/dev", {"role": "member"}, basic("alice"))
    assert_error(
        client.simulate_put(f"{ORG}/team/dev/members/nobody", headers=basic("alice")),
        404,
        "not_found",
    )
    assert_error(
        client.simulate_put(f"{ORG}/team/dev/members/acme", headers=basic("alice")),
        404,
        "not_found",
    )
    assert_error(
        client.simulate_put(f"{ORG}/team/nope/members/bob", headers=basic("alice")),
        404,
        "not_found",
    )
    r = client.simulate_put(f"{ORG}/team/dev/members/acme+ci", headers=basic("alice"))
    assert_error(r, 400, "invalid_request")
    r = client.simulate_delete(f"{ORG}/team/owners/members/alice", headers=basic("alice"))
    assert_error(r, 400, "invalid_request")
    assert_error(
        client.simulate_put(f"{ORG}/team/dev/members/bob", headers=basic("bob")),
        403,
        "insufficient_scope",
    )


def test_team_permissions_and_deletion(
    client: falcon.testing.TestClient, container: Container, acme: str
) -> None:
    send_json(client, "PUT", f"{ORG}/team/dev", {"role": "member"}, basic("alice"))
    repo = create_repository(container, "acme/web")
    container.registry.grant(repo, Principal.team("acme", "dev"), RepositoryRole.WRITE, SYSTEM)
    r = client.simulate_get(f"{ORG}/team/dev/permissions", headers=basic("alice"))
    assert r.status_code == 200
    assert r.json == {
        "permissions": [{"repository": {"name": "web", "is_public": False}, "role": "write"}]
    }
    assert client.simulate_get(ORG, headers=basic("alice")).json["teams"]["dev"]["repo_count"] == 1
    r = client.simulate_delete(f"{ORG}/team/dev", headers=basic("alice"))
    assert r.status_code == 204
    assert container.identity_queries.team("acme", "dev") is None
    # The team's grants went with it.
    assert container.identity_queries.repository_grants("acme/web") == []
    assert_error(
        client.simulate_delete(f"{ORG}/team/dev", headers=basic("alice")), 404, "not_found"
    )
    assert_error(
        client.simulate_get(f"{ORG}/team/dev/permissions", headers=basic("alice")), 404, "not_found"
    )
    r = client.simulate_delete(f"{ORG}/team/owners", headers=basic("alice"))
    assert_error(r, 400, "invalid_request")
