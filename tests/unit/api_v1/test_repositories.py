"""/api/v1 repositories: create, list (token pages), view, delete, visibility."""

from __future__ import annotations

import email.utils
from typing import Any

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
    Visibility,
)
from cargohold.domain.values import RepositoryName
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    create_repository,
    push_image,
    send_json,
)

REPOS = "/api/v1/repository"


def create(
    client: falcon.testing.TestClient, headers: dict[str, str], **payload: Any
) -> falcon.testing.Result:
    body = {"repository": "app", "visibility": "private", "description": "", **payload}
    return send_json(client, "POST", REPOS, body, headers)


# -- create ---------------------------------------------------------------------------------


def test_create_in_own_namespace(client: falcon.testing.TestClient, container: Container) -> None:
    r = create(client, basic("alice"))
    assert r.status_code == 201
    assert r.json == {"namespace": "alice", "name": "app", "kind": "image"}
    assert container.queries.visibility(RepositoryName("alice/app")) == "private"
    r = create(client, basic("alice"), repository="pub", visibility="public")
    assert r.status_code == 201
    assert container.queries.visibility(RepositoryName("alice/pub")) == "public"
    r = create(client, basic("alice"))
    assert "already exists" in assert_error(r, 400, "invalid_request")["detail"]


def test_create_in_an_organization_needs_creator(
    client: falcon.testing.TestClient, container: Container
) -> None:
    org = AccountName("acme")
    container.identity.create_organization(org, AccountName("alice"), SYSTEM)
    container.identity.upsert_team(org, TeamName("makers"), TeamRole.CREATOR, SYSTEM)
    container.identity.upsert_team(org, TeamName("users"), TeamRole.MEMBER, SYSTEM)
    container.identity.add_team_member(org, TeamName("makers"), AccountName("bob"), SYSTEM)
    container.identity.add_team_member(org, TeamName("users"), AccountName("carol"), SYSTEM)
    assert_error(create(client, basic("carol"), namespace="acme"), 403, "insufficient_scope")
    assert create(client, basic("bob"), namespace="acme").status_code == 201
    # The creator gets admin on what they create, as in Quay.
    assert (
        Principal.user("bob"),
        RepositoryRole.ADMIN,
    ) in container.identity_queries.repository_grants("acme/app")


def test_create_needs_the_repo_create_scope(
    client: falcon.testing.TestClient, container: Container
) -> None:
    headers = api_token(container, "alice", ApiScope.REPO_ADMIN, ApiScope.USER_ADMIN)
    assert_error(create(client, headers), 403, "insufficient_scope")
    assert not container.queries.repository_exists(RepositoryName("alice/app"))
    assert create(client, api_token(container, "alice", ApiScope.REPO_CREATE)).status_code == 201
    assert_error(create(client, {}), 401, "invalid_token")
    assert_error(create(client, basic("bob"), namespace="alice"), 403, "insufficient_scope")
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    token = container.identity.create_robot(AccountName("acme"), RobotShortName("ci"), SYSTEM)
    assert_error(create(client, basic("acme+ci", token)), 403, "insufficient_scope")
    # A superuser may create anywhere, but only in a namespace that exists.
    assert create(client, basic("admin"), namespace="bob").status_code == 201
    assert_error(create(client, basic("admin"), namespace="nobody"), 404, "not_found")


@pytest.mark.parametrize(
    "payload",
    [
        {"repository": None},
        {"repository": 5},
        {"repository": "Bad Name"},
        {"repository": "a/b"},
        {"visibility": None},
        {"visibility": "secret"},
        {"repo_kind": "application"},
        {"description": 1},
    ],
)
def test_create_validation(client: falcon.testing.TestClient, payload: dict[str, Any]) -> None:
    assert_error(create(client, basic("alice"), **payload), 400, "invalid_request")


# -- list -----------------------------------------------------------------------------------


def test_listing_pages_round_trip(client: falcon.testing.TestClient, container: Container) -> None:
    names = sorted(f"alice/r{i:03d}" for i in range(205))
    for name in names:
        create_repository(container, name)
    create_repository(container, "bob/hidden")
    seen: list[str] = []
    params = {"namespace": "alice"}
    pages = 0
    while True:
        r = client.simulate_get(REPOS, params=params, headers=basic("alice"))
        assert r.status_code == 200
        pages += 1
        seen += [f"{x['namespace']}/{x['name']}" for x in r.json["repositories"]]
        if "next_page" not in r.json:
            break
        assert len(r.json["repositories"]) == 100
        params = {"namespace": "alice", "next_page": r.json["next_page"]}
    assert pages == 3 and seen == names
    entry = r.json["repositories"][0]
    assert entry == {
        "namespace": "alice",
        "name": entry["name"],
        "description": "",
        "is_public": False,
        "kind": "image",
        "state": "NORMAL",
        "is_starred": False,
    }


def test_listing_shows_only_what_the_caller_may_read(
    client: falcon.testing.TestClient, container: Container
) -> None:
    create_repository(container, "alice/private")
    create_repository(container, "alice/public", Visibility.PUBLIC)
    create_repository(container, "bob/private")
    create_repository(container, "bob/shared")
    container.registry.grant(
        RepositoryName("bob/shared"), Principal.user("alice"), RepositoryRole.READ, SYSTEM
    )

    def listed(params: dict[str, str], headers: dict[str, str]) -> list[str]:
        r = client.simulate_get(REPOS, params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [f"{x['namespace']}/{x['name']}" for x in r.json["repositories"]]

    assert listed({"public": "true"}, {}) == ["alice/public"]
    assert listed({"public": "true"}, basic("alice")) == [
        "alice/private",
        "alice/public",
        "bob/shared",
    ]
    assert listed({"namespace": "bob"}, basic("alice")) == ["bob/shared"]
    assert listed({"public": "true"}, basic("carol")) == ["alice/public"]
    assert listed({"starred": "true"}, basic("alice")) == []
    # A token without repo scopes sees what anyone sees.
    headers = api_token(container, "alice", ApiScope.USER_READ)
    assert listed({"public": "true"}, headers) == ["alice/public"]
    anonymous = client.simulate_get(REPOS, params={"public": "true"}).json["repositories"]
    assert "is_starred" not in anonymous[0] and anonymous[0]["is_public"] is True


def test_listing_errors(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get(REPOS, headers=basic("alice")), 400, "invalid_request")
    r = client.simulate_get(REPOS, params={"public": "maybe"}, headers=basic("alice"))
    assert_error(r, 400, "invalid_request")
    r = client.simulate_get(REPOS, params={"public": "true", "next_page": "garbage!"})
    assert "next_page" in assert_error(r, 400, "invalid_request")["detail"]


# -- one repository -------------------------------------------------------------------------


def test_repository_view_with_tags(client: falcon.testing.TestClient, container: Container) -> None:
    digest = push_image(client, "alice/app", basic("alice"), tags=("v1", "latest"))
    r = client.simulate_get(f"{REPOS}/alice/app", headers=basic("alice"))
    assert r.status_code == 200
    body = r.json
    assert body["namespace"] == "alice" and body["name"] == "app" and body["kind"] == "image"
    assert body["is_public"] is False and body["is_organization"] is False
    assert body["can_write"] is True and body["can_admin"] is True
    assert body["state"] == "NORMAL"
    moved = {name: tag.pop("last_modified") for name, tag in body["tags"].items()}
    assert body["tags"] == {
        "latest": {"name": "latest", "size": None, "manifest_digest": digest},
        "v1": {"name": "v1", "size": None, "manifest_digest": digest},
    }
    for when in moved.values():  # RFC 2822, as Quay writes dates
        assert email.utils.parsedate_to_datetime(when).year >= 2024
    r = client.simulate_get(
        f"{REPOS}/alice/app", params={"includeTags": "false"}, headers=basic("alice")
    )
    assert "tags" not in r.json
    # A read-only token may look, and is told it cannot write.
    headers = api_token(container, "alice", ApiScope.REPO_READ)
    r = client.simulate_get(f"{REPOS}/alice/app", headers=headers)
    assert r.status_code == 200 and r.json["can_write"] is False and r.json["can_admin"] is False


def test_private_repositories_are_secret(
    client: falcon.testing.TestClient, container: Container
) -> None:
    create_repository(container, "alice/app")
    for path in (f"{REPOS}/alice/app", f"{REPOS}/alice/missing"):
        assert_error(client.simulate_get(path), 401, "invalid_token")
        assert_error(client.simulate_get(path, headers=basic("bob")), 403, "insufficient_scope")
    # Only whoever may see it learns that it is not there.
    assert_error(
        client.simulate_get(f"{REPOS}/alice/missing", headers=basic("alice")), 404, "not_found"
    )
    assert_error(
        client.simulate_get(f"{REPOS}/alice/Bad_Name", headers=basic("admin")), 404, "not_found"
    )


def test_anonymous_reads_public_repositories(
    client: falcon.testing.TestClient, container: Container
) -> None:
    create_repository(container, "alice/pub", Visibility.PUBLIC)
    r = client.simulate_get(f"{REPOS}/alice/pub")
    assert r.status_code == 200 and r.json["is_public"] is True
    assert r.json["can_write"] is False and r.json["can_admin"] is False and r.json["tags"] == {}
    # Public stays readable with a token lacking repository scopes.
    headers = api_token(container, "bob", ApiScope.USER_READ)
    assert client.simulate_get(f"{REPOS}/alice/pub", headers=headers).status_code == 200
    assert_error(client.simulate_delete(f"{REPOS}/alice/pub"), 401, "invalid_token")
    r = client.simulate_delete(f"{REPOS}/alice/pub", headers=basic("bob"))
    assert_error(r, 403, "insufficient_scope")


def test_delete_needs_admin(client: falcon.testing.TestClient, container: Container) -> None:
    repo = create_repository(container, "alice/app")
    container.registry.grant(repo, Principal.user("bob"), RepositoryRole.WRITE, SYSTEM)
    assert_error(
        client.simulate_delete(f"{REPOS}/alice/app", headers=basic("bob")),
        403,
        "insufficient_scope",
    )
    headers = api_token(container, "alice", ApiScope.REPO_WRITE)
    assert_error(
        client.simulate_delete(f"{REPOS}/alice/app", headers=headers), 403, "insufficient_scope"
    )
    r = client.simulate_delete(f"{REPOS}/alice/app", headers=basic("alice"))
    assert r.status_code == 204
    assert not container.queries.repository_exists(repo)
    assert_error(
        client.simulate_delete(f"{REPOS}/alice/app", headers=basic("alice")), 404, "not_found"
    )


def test_change_visibility(client: falcon.testing.TestClient, container: Container) -> None:
    create_repository(container, "alice/app")
    path = f"{REPOS}/alice/app/changevisibility"
    r = send_json(client, "POST", path, {"visibility": "public"}, basic("alice"))
    assert r.status_code == 200 and r.json == {"success": True}
    assert client.simulate_get(f"{REPOS}/alice/app").status_code == 200
    r = send_json(client, "POST", path, {"visibility": "private"}, basic("alice"))
    assert r.status_code == 200
    assert_error(client.simulate_get(f"{REPOS}/alice/app"), 401, "invalid_token")
    assert_error(
        send_json(client, "POST", path, {"visibility": "open"}, basic("alice")),
        400,
        "invalid_request",
    )
    assert_error(send_json(client, "POST", path, None, basic("alice")), 400, "invalid_request")
    assert_error(
        send_json(client, "POST", path, {"visibility": "public"}, basic("bob")),
        403,
        "insufficient_scope",
    )
    r = send_json(
        client,
        "POST",
        f"{REPOS}/alice/none/changevisibility",
        {"visibility": "public"},
        basic("alice"),
    )
    assert_error(r, 404, "not_found")
