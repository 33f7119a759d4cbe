"""Token auth on /v2 through falcon's TestClient: challenges, tokens, roles, push-to-create."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap, ensure_admin
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.errors import CredentialsInvalid, LoginThrottled
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
from cargohold.domain.values import Actor, RepositoryName
from cargohold.http.app import create_app
from tests.fixtures.digests import sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SYSTEM = Caller(Actor.system(), "test")
PASSWORDS = {"admin": "admin-pw-1", "alice": "alice-pw-1", "bob": "bob-pw-1", "carol": "carol-pw-1"}


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp_path / "data", "admin_password": PASSWORDS["admin"]},
    )
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    try:
        assert ensure_admin(c) is None  # the password came from the settings
        for name in ("alice", "bob", "carol"):
            c.identity.create_user(
                AccountName(name), f"{name}@example.com", PASSWORDS[name], SYSTEM
            )
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(container))


def basic(user: str, secret: str | None = None) -> dict[str, str]:
    raw = f"{user}:{PASSWORDS[user] if secret is None else secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code(r: falcon.testing.Result) -> str:
    return str(r.json["errors"][0]["code"])


def push_image(
    client: falcon.testing.TestClient, name: str, headers: dict[str, str], tag: str = "v1"
) -> falcon.testing.Result:
    """Push a one-layer image; returns the manifest PUT's result (or the first failure)."""
    config = json.dumps({"repo": name, "tag": tag}).encode()
    layer = f"layer of {name}:{tag}".encode()
    for blob in (config, layer):
        r = client.simulate_post(
            f"/v2/{name}/blobs/uploads/",
            params={"digest": sha256(blob)},
            body=blob,
            headers=headers,
        )
        if r.status_code != 201:
            return r
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(layer),
                "size": len(layer),
            }
        ],
    }
    return client.simulate_put(
        f"/v2/{name}/manifests/{tag}",
        body=json.dumps(manifest).encode(),
        headers={**headers, "Content-Type": OCI_MANIFEST},
    )


def token(
    client: falcon.testing.TestClient, headers: dict[str, str], *scopes: str
) -> dict[str, Any]:
    r = client.simulate_get(
        "/v2/auth", params={"service": "cargohold", "scope": list(scopes)}, headers=headers
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def access_of(jwt_token: str) -> list[dict[str, Any]]:
    payload = jwt_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return list(claims["access"])


def test_anonymous_base_request_gets_the_bearer_challenge(
    client: falcon.testing.TestClient,
) -> None:
    r = client.simulate_get("/v2/")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    assert r.headers["www-authenticate"] == (
        'Bearer realm="http://falconframework.org/v2/auth",service="cargohold"'
    )


def test_token_flow_for_a_user(client: falcon.testing.TestClient) -> None:
    body = token(client, basic("alice"), "repository:alice/app:pull,push")
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert access_of(body["token"]) == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    headers = bearer(body["token"])
    assert client.simulate_get("/v2/", headers=headers).status_code == 200
    assert push_image(client, "alice/app", headers).status_code == 201
    r = client.simulate_get("/v2/alice/app/manifests/v1", headers=headers)
    assert r.status_code == 200
    # A token without an entry for another repository asks the client to fetch one.
    r = client.simulate_get("/v2/alice/other/tags/list", headers=headers)
    assert r.status_code == 401
    assert 'scope="repository:alice/other:pull"' in r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_bad_credentials_are_unauthorized_everywhere(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get(
        "/v2/auth", params={"scope": "repository:a/b:pull"}, headers=basic("alice", "wrong")
    )
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    assert r.headers["www-authenticate"].startswith("Bearer realm=")
    r = client.simulate_get("/v2/", headers=basic("nobody", "x"))
    assert r.status_code == 401
    r = client.simulate_get("/v2/", headers=bearer("not.a.jwt"))
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    r = client.simulate_get("/v2/", headers={"Authorization": "Basic %%%"})
    assert r.status_code == 401


def test_private_repositories_deny_others_and_challenge_anonymous(
    client: falcon.testing.TestClient, container: Container
) -> None:
    assert push_image(client, "alice/app", basic("alice")).status_code == 201
    r = client.simulate_get("/v2/alice/app/manifests/v1")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    assert 'scope="repository:alice/app:pull"' in r.headers["www-authenticate"]
    r = client.simulate_get("/v2/alice/app/manifests/v1", headers=basic("bob"))
    assert r.status_code == 403 and code(r) == "DENIED"
    # A token for bob holds the entry with no actions: DENIED, not another challenge.
    body = token(client, basic("bob"), "repository:alice/app:pull,push")
    assert access_of(body["token"])[0]["actions"] == []
    r = client.simulate_get("/v2/alice/app/manifests/v1", headers=bearer(body["token"]))
    assert r.status_code == 403 and code(r) == "DENIED"
    # Pushing into someone else's namespace is denied, and creates nothing.
    r = push_image(client, "alice/bobs", basic("bob"))
    assert r.status_code == 403 and code(r) == "DENIED"
    assert not container.queries.repository_exists(RepositoryName("alice/bobs"))
    # Read grants read, not write.
    container.registry.grant(
        RepositoryName("alice/app"), Principal.user("bob"), RepositoryRole.READ, SYSTEM
    )
    assert (
        client.simulate_get("/v2/alice/app/manifests/v1", headers=basic("bob")).status_code == 200
    )
    r = push_image(client, "alice/app", basic("bob"), tag="v2")
    assert r.status_code == 403 and code(r) == "DENIED"
    r = client.simulate_delete("/v2/alice/app/manifests/v1", headers=basic("bob"))
    assert r.status_code == 403


def test_anonymous_pull_of_public_repositories(
    client: falcon.testing.TestClient, container: Container
) -> None:
    assert push_image(client, "alice/pub", basic("alice")).status_code == 201
    container.registry.set_visibility(RepositoryName("alice/pub"), Visibility.PUBLIC, SYSTEM)
    assert client.simulate_get("/v2/alice/pub/manifests/v1").status_code == 200
    assert client.simulate_get("/v2/alice/pub/tags/list").json["tags"] == ["v1"]
    body = token(client, {}, "repository:alice/pub:pull,push")
    assert access_of(body["token"])[0]["actions"] == ["pull"]
    r = push_image(client, "alice/pub", {}, tag="v2")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"


def test_push_to_create_in_an_organization_applies_default_permissions(
    client: falcon.testing.TestClient, container: Container
) -> None:
    acme = AccountName("acme")
    container.identity.create_organization(acme, AccountName("alice"), SYSTEM)
    container.identity.upsert_team(acme, TeamName("builders"), TeamRole.CREATOR, SYSTEM)
    container.identity.add_team_member(acme, TeamName("builders"), AccountName("carol"), SYSTEM)
    robot_token = container.identity.create_robot(acme, RobotShortName("ci"), SYSTEM)
    container.identity.set_default_permission(
        acme, Principal.robot("acme", "ci"), RepositoryRole.WRITE, SYSTEM
    )
    # carol may create; bob (no team) may not.
    assert push_image(client, "acme/web", basic("bob")).status_code == 403
    assert push_image(client, "acme/web", basic("carol")).status_code == 201
    grants = dict(container.identity_queries.repository_grants("acme/web"))
    assert grants == {
        Principal.user("carol"): RepositoryRole.ADMIN,
        Principal.robot("acme", "ci"): RepositoryRole.WRITE,
    }
    assert container.queries.visibility(RepositoryName("acme/web")) == "private"
    # The robot logs in as org+name with its token and pushes; it cannot create.
    robot = {
        "Authorization": "Basic " + base64.b64encode(f"acme+ci:{robot_token}".encode()).decode()
    }
    assert push_image(client, "acme/web", robot, tag="v2").status_code == 201
    assert push_image(client, "acme/other", robot).status_code == 403
    # A regenerated token replaces the old one.
    container.identity.regenerate_robot_token(acme, RobotShortName("ci"), SYSTEM)
    assert client.simulate_get("/v2/acme/web/tags/list", headers=robot).status_code == 401


def test_api_tokens_are_capped_by_their_scopes(
    client: falcon.testing.TestClient, container: Container
) -> None:
    assert push_image(client, "alice/app", basic("alice")).status_code == 201
    _, read_only = container.identity.issue_api_token(
        AccountName("alice"), [ApiScope.REPO_READ], SYSTEM
    )
    as_token = {
        "Authorization": "Basic " + base64.b64encode(f"$token:{read_only}".encode()).decode()
    }
    assert client.simulate_get("/v2/alice/app/manifests/v1", headers=as_token).status_code == 200
    r = push_image(client, "alice/app", as_token, tag="v2")
    assert r.status_code == 403 and code(r) == "DENIED"
    # The owner's name with the token as password works the same; another name does not.
    own = {"Authorization": "Basic " + base64.b64encode(f"alice:{read_only}".encode()).decode()}
    assert client.simulate_get("/v2/alice/app/tags/list", headers=own).status_code == 200
    other = {"Authorization": "Basic " + base64.b64encode(f"bob:{read_only}".encode()).decode()}
    assert client.simulate_get("/v2/alice/app/tags/list", headers=other).status_code == 401


def test_repeated_failed_logins_are_slowed(client: falcon.testing.TestClient) -> None:
    statuses = [
        client.simulate_get("/v2/", headers=basic("alice", f"wrong-{i}")).status_code
        for i in range(8)
    ]
    assert statuses[0] == 401 and 429 in statuses
    r = client.simulate_get("/v2/", headers=basic("alice"))
    assert r.status_code == 429 and code(r) == "TOOMANYREQUESTS"
    assert int(r.headers["retry-after"]) >= 1


def test_catalog_lists_what_the_caller_may_pull(
    client: falcon.testing.TestClient, container: Container
) -> None:
    for name, user in (("alice/a", "alice"), ("alice/pub", "alice"), ("bob/b", "bob")):
        assert push_image(client, name, basic(user)).status_code == 201
    container.registry.set_visibility(RepositoryName("alice/pub"), Visibility.PUBLIC, SYSTEM)
    listed = lambda headers: client.simulate_get("/v2/_catalog", headers=headers).json[  # noqa: E731
        "repositories"
    ]
    assert listed(basic("alice")) == ["alice/a", "alice/pub"]
    assert listed(basic("bob")) == ["alice/pub", "bob/b"]
    assert listed({}) == ["alice/pub"]
    assert listed(basic("admin")) == ["alice/a", "alice/pub", "bob/b"]


def test_a_mount_never_copies_a_blob_the_caller_cannot_pull(
    client: falcon.testing.TestClient, container: Container
) -> None:
    assert push_image(client, "alice/app", basic("alice")).status_code == 201
    layer = b"layer of alice/app:v1"
    r = client.simulate_post(
        "/v2/bob/copy/blobs/uploads/",
        params={"mount": sha256(layer), "from": "alice/app"},
        headers=basic("bob"),
    )
    assert r.status_code == 202  # an ordinary upload instead of a mount
    r = client.simulate_post(
        "/v2/bob/copy/blobs/uploads/", params={"mount": sha256(layer)}, headers=basic("bob")
    )
    assert r.status_code == 202
    r = client.simulate_head(f"/v2/bob/copy/blobs/{sha256(layer)}", headers=basic("bob"))
    assert r.status_code == 404
    r = client.simulate_post(
        "/v2/alice/copy/blobs/uploads/",
        params={"mount": sha256(layer), "from": "alice/app"},
        headers=basic("alice"),
    )
    assert r.status_code == 201


def test_a_token_reused_for_an_action_never_asked_for_gets_a_new_challenge(
    client: falcon.testing.TestClient,
) -> None:
    """Clients cache one token per repository: a pull token met on an upload must lead
    them to fetch a push token (401 insufficient_scope), not to a dead end (403)."""
    pull_only = token(client, basic("alice"), "repository:alice/app:pull")["token"]
    r = client.simulate_post("/v2/alice/app/blobs/uploads/", headers=bearer(pull_only))
    assert r.status_code == 401
    assert 'scope="repository:alice/app:pull,push"' in r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    push = token(client, basic("alice"), "repository:alice/app:pull,push")["token"]
    assert (
        client.simulate_post("/v2/alice/app/blobs/uploads/", headers=bearer(push)).status_code
        == 202
    )


_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@given(
    authorization=st.one_of(
        _HEADER_TEXT,
        _HEADER_TEXT.map(lambda t: "Basic " + t),
        st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        _HEADER_TEXT.map(lambda t: "Bearer " + t),
    ),
    scopes=st.lists(
        st.one_of(
            _HEADER_TEXT,
            st.builds(
                lambda kind, name, actions: f"{kind}:{name}:{actions}",
                st.sampled_from(["repository", "registry", "repository(plugin)", "x"]),
                _HEADER_TEXT,
                _HEADER_TEXT,
            ),
        ),
        max_size=3,
    ),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_credentials_and_scopes_never_crash(
    client: falcon.testing.TestClient, authorization: str, scopes: list[str]
) -> None:
    headers = {"Authorization": authorization}
    r = client.simulate_get("/v2/auth", params={"scope": scopes}, headers=headers)
    assert r.status_code in (200, 400, 401, 429), r.text
    if r.status_code != 200:
        assert r.json["errors"][0]["code"] in {
            "UNAUTHORIZED",
            "UNSUPPORTED",
            "NAME_INVALID",
            "TOOMANYREQUESTS",
        }
    for path in ("/v2/", "/v2/alice/app/tags/list", "/api/v1/user/"):
        r = client.simulate_get(path, headers=headers)
        assert r.status_code in (200, 401, 403, 404, 429), (path, r.status_code, r.text)


def test_a_registry_token_keeps_the_scopes_of_the_api_token_it_came_from(
    client: falcon.testing.TestClient, container: Container
) -> None:
    """A mount's source is judged from the token's subject: never beyond its scopes."""
    assert push_image(client, "alice/app", basic("alice")).status_code == 201
    _, create_only = container.identity.issue_api_token(
        AccountName("alice"), [ApiScope.REPO_CREATE], SYSTEM
    )
    as_token = {
        "Authorization": "Basic " + base64.b64encode(f"$token:{create_only}".encode()).decode()
    }
    jwt_token = token(client, as_token, "repository:alice/new:pull,push")["token"]
    assert access_of(jwt_token)[0]["actions"] == ["pull", "push"]
    layer = b"layer of alice/app:v1"
    r = client.simulate_post(
        "/v2/alice/new/blobs/uploads/",
        params={"mount": sha256(layer), "from": "alice/app"},
        headers=bearer(jwt_token),
    )
    assert r.status_code == 202  # not mounted: the token may not read alice/app


def test_failed_token_logins_from_one_address_do_not_lock_out_another(
    container: Container,
) -> None:
    _, good = container.identity.issue_api_token(AccountName("alice"), [ApiScope.REPO_READ], SYSTEM)
    for i in range(10):
        with pytest.raises((CredentialsInvalid, LoginThrottled)):
            container.authenticator.basic("$token", f"chk_wrong{i}", "10.0.0.1")
    with pytest.raises(LoginThrottled):
        container.authenticator.basic("$token", good, "10.0.0.1")
    assert container.authenticator.basic("$token", good, "10.0.0.2").name == "alice"


def test_a_method_missing_from_a_routes_action_map_needs_push(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler added to a resource without an entry in its route's action map must not
    fall back to the base check (any valid credentials): it needs push."""
    from cargohold.http.registry_v2.listing import TagsResource

    calls: list[str] = []

    def on_put(self: object, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        calls.append(name)

    monkeypatch.setattr(TagsResource, "on_put", on_put, raising=False)
    client = falcon.testing.TestClient(create_app(container))
    assert push_image(client, "alice/app", basic("alice")).status_code == 201
    container.registry.grant(
        RepositoryName("alice/app"), Principal.user("bob"), RepositoryRole.READ, SYSTEM
    )
    assert client.simulate_get("/v2/alice/app/tags/list", headers=basic("bob")).status_code == 200
    r = client.simulate_put("/v2/alice/app/tags/list", headers=basic("bob"))
    assert r.status_code == 403 and code(r) == "DENIED"
    r = client.simulate_put("/v2/alice/app/tags/list", headers=basic("carol"))
    assert r.status_code == 403
    assert calls == []
    # Who may push passes the same check.
    assert client.simulate_put("/v2/alice/app/tags/list", headers=basic("alice")).status_code == 200
    assert calls == ["alice/app"]
