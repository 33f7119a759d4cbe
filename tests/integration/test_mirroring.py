"""Repository mirrors against real upstream registries: Quay's API, the sync, the events.

The upstreams are real (``tests/fixtures/upstreams.py``): the reference registry open and
with htpasswd Basic auth, and distribution v3 behind a Docker token server. The registry
under test is a container on the embedded default, driven through its /api/v1 and /v2
(falcon's test client) and ``chores.sync_due_mirrors`` (what ``serve``'s worker and
``cargohold mirror run-once`` run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from cargohold import chores
from cargohold.bootstrap import Container
from cargohold.domain.identity import AccountName, RobotShortName
from cargohold.domain.values import Digest, RepositoryName
from tests.fixtures.fault_proxy import running_proxy
from tests.fixtures.upstreams import Upstream
from tests.operations import verify
from tests.unit.api_v1.support import (
    SYSTEM,
    assert_error,
    basic,
    create_repository,
    make_client,
    make_container,
    push_image,
    send_json,
)

ROBOT = "acme+mirror"
PAST = "2020-01-01T00:00:00Z"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = make_container(tmp_path)
    try:
        c.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
        token = c.identity.create_robot(AccountName("acme"), RobotShortName("mirror"), SYSTEM)
        c.robot_token = token  # type: ignore[attr-defined]
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return make_client(container)


def _repo(container: Container) -> str:
    name = f"acme/m{uuid.uuid4().hex[:8]}"
    create_repository(container, name)
    return name


def _config(upstream: Upstream, path: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "is_enabled": True,
        "external_reference": f"{upstream.registry}/{path}",
        "sync_interval": 3600,
        "sync_start_date": PAST,
        "robot_username": ROBOT,
        "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["v*"]},
        "skopeo_timeout_interval": 300,
        "external_registry_config": {"verify_tls": False},
    }
    if upstream.username:
        body["external_registry_username"] = upstream.username
        body["external_registry_password"] = upstream.password
    body.update(extra)
    return body


def _mirror_path(name: str) -> str:
    return f"/api/v1/repository/{name}/mirror"


def _configure(client: falcon.testing.TestClient, name: str, body: dict[str, Any]) -> None:
    r = send_json(client, "POST", _mirror_path(name), body, basic("alice"))
    assert r.status_code == 201, r.text


def _get(client: falcon.testing.TestClient, name: str) -> dict[str, Any]:
    r = client.simulate_get(_mirror_path(name), headers=basic("alice"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def _run(container: Container, name: str) -> int:
    return chores.sync_due_mirrors(
        container.mirror_queries, container.mirror_sync, container.queries.now_ms(), name
    )


def _tags(container: Container, name: str) -> dict[str, str]:
    repo = container.registry.current(RepositoryName(name))
    assert repo is not None
    return {str(t): str(d) for t, d in repo.tags.items()}


def _audit(container: Container, name: str) -> list[tuple[str, dict[str, Any]]]:
    with container.views_db.transaction() as c:
        rows = c.execute(
            "SELECT kind, metadata FROM audit_log WHERE repository = ? ORDER BY position, sequence",
            (name,),
        ).fetchall()
    return [(str(k), json.loads(m)) for k, m in rows]


def _blob(container: Container, digest: str) -> bytes:
    return b"".join(container.blobs.read(Digest.parse(digest)))


def _push_blob(
    client: falcon.testing.TestClient, name: str, blob: bytes, headers: dict[str, str]
) -> falcon.testing.Result:
    return client.simulate_post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": "sha256:" + hashlib.sha256(blob).hexdigest()},
        body=blob,
        headers=headers,
    )


# -- the API ---------------------------------------------------------------------------


def test_configuring_a_mirror_is_quay_shaped_and_never_returns_the_password(
    container: Container, client: falcon.testing.TestClient, basic_upstream: Upstream
) -> None:
    name = _repo(container)
    assert client.simulate_get(_mirror_path(name), headers=basic("alice")).status_code == 404
    _configure(client, name, _config(basic_upstream, "team/app"))
    got = _get(client, name)
    assert got["mirror_type"] == "PULL"
    assert got["sync_status"] == "NEVER_RUN"
    assert got["sync_retries_remaining"] == 3
    assert got["sync_start_date"] == PAST
    assert got["robot_username"] == ROBOT
    assert got["external_registry_username"] == basic_upstream.username
    assert got["root_rule"] == {"rule_kind": "tag_glob_csv", "rule_value": ["v*"]}
    assert got["external_registry_config"]["verify_tls"] is False
    assert "external_registry_password" not in got
    assert basic_upstream.password and basic_upstream.password not in json.dumps(got)
    # The password is sealed in the log: no event and no view holds it in the clear.
    with container.views_db.transaction() as c:
        dump = json.dumps([list(r) for r in c.execute("SELECT * FROM mirrors").fetchall()])
        dump += json.dumps([list(r) for r in c.execute("SELECT * FROM audit_log").fetchall()])
    assert basic_upstream.password not in dump
    for event in container.log.events.get(
        container.mirrors.get(RepositoryName(name)).id
    ):  # the Created event carries ciphertext only
        assert basic_upstream.password.encode() not in repr(event.__dict__).encode()
    # The robot may write; the repository is a mirror.
    repo = container.registry.current(RepositoryName(name))
    assert repo is not None and repo.state == "MIRROR"
    assert [r.value for p, r in repo.permissions.items() if p.name == ROBOT] == ["write"]
    assert [k for k, _ in _audit(container, name)][-3:] == [
        "repo_mirror_enabled",
        "add_repo_permission",
        "change_repo_state",
    ]
    again = send_json(
        client, "POST", _mirror_path(name), _config(basic_upstream, "x"), basic("alice")
    )
    assert_error(again, 409, "conflict")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"sync_start_date": "2020-01-01 00:00:00"}, "sync_start_date"),
        ({"skopeo_timeout_interval": 10}, "skopeo_timeout_interval"),
        ({"root_rule": {"rule_kind": "regex", "rule_value": ["v*"]}}, "rule_kind"),
        ({"robot_username": "other+mirror"}, "namespace"),
        ({"robot_username": "acme+nobody"}, "does not exist"),
        ({"robot_username": None}, "robot_username"),
        ({"architecture_filter": ["mips"]}, "architecture_filter"),
        ({"external_reference": "registry.example.com/"}, "external_reference"),
    ],
)
def test_bad_mirror_settings_are_400_naming_the_field(
    container: Container,
    client: falcon.testing.TestClient,
    open_upstream: Upstream,
    change: dict[str, Any],
    fragment: str,
) -> None:
    name = _repo(container)
    r = send_json(
        client, "POST", _mirror_path(name), _config(open_upstream, "a", **change), basic("alice")
    )
    body = assert_error(r, 400, "invalid_request")
    assert fragment in body["detail"]


def test_put_changes_a_subset_and_a_password_needs_a_username(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    name = _repo(container)
    _configure(client, name, _config(open_upstream, "a"))
    r = send_json(
        client,
        "PUT",
        _mirror_path(name),
        {"external_registry_password": "pw-1234567"},
        basic("alice"),
    )
    assert_error(r, 400, "invalid_request")
    r = send_json(
        client,
        "PUT",
        _mirror_path(name),
        {"sync_interval": 60, "is_enabled": False},
        basic("alice"),
    )
    assert r.status_code == 201, r.text
    got = _get(client, name)
    assert (got["sync_interval"], got["is_enabled"]) == (60, False)
    kinds = [k for k, _ in _audit(container, name)]
    assert kinds[-2:] == ["repo_mirror_config_changed", "repo_mirror_disabled"]
    assert _audit(container, name)[-2][1]["changed"] == ["sync_interval"]
    # Bob is not an admin of the repository.
    assert (
        send_json(client, "PUT", _mirror_path(name), {"sync_interval": 1}, basic("bob")).status_code
        == 403
    )


def test_changestate_and_writes_refused_by_state(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    name = _repo(container)
    _configure(client, name, _config(open_upstream, "a"))
    # A mirror takes writes from its robot only: alice (an admin) is refused, with why.
    r = _push_blob(client, name, b"not the mirror's", basic("alice"))
    assert r.status_code == 403, r.text
    assert r.json["errors"][0]["code"] == "DENIED"
    assert "is a mirror" in r.json["errors"][0]["message"]
    assert ROBOT in r.json["errors"][0]["message"]
    # Its robot may push (what a client holding the mirror's robot credentials does).
    robot = {
        "Authorization": "Basic "
        + base64.b64encode(f"{ROBOT}:{container.robot_token}".encode()).decode()
    }  # type: ignore[attr-defined]
    assert client.simulate_post(f"/v2/{name}/blobs/uploads/", headers=robot).status_code == 202
    push_image(client, name, robot)
    # A chunked upload is refused before it takes a byte.
    r = client.simulate_post(f"/v2/{name}/blobs/uploads/", headers=basic("alice"))
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED", r.text
    state = f"/api/v1/repository/{name}/changestate"
    assert_error(
        send_json(client, "PUT", state, {"state": "FROZEN"}, basic("alice")), 400, "invalid_request"
    )
    r = send_json(client, "PUT", state, {"state": "NORMAL"}, basic("alice"))
    assert r.status_code == 200 and r.json == {"success": True}
    push_image(client, name, basic("alice"))
    r = send_json(client, "PUT", state, {"state": "READ_ONLY"}, basic("alice"))
    assert r.status_code == 200
    r = _push_blob(client, name, b"read-only", basic("alice"))
    assert r.status_code == 403, r.text
    assert r.json["errors"][0]["code"] == "DENIED"
    assert "read-only" in r.json["errors"][0]["message"]


def test_sync_now_and_cancel_answer_409_when_they_cannot(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    name = _repo(container)
    assert (
        client.simulate_post(_mirror_path(name) + "/sync-now", headers=basic("alice")).status_code
        == 404
    )
    _configure(client, name, _config(open_upstream, "a", sync_start_date="2999-01-01T00:00:00Z"))
    assert_error(
        client.simulate_post(_mirror_path(name) + "/sync-cancel", headers=basic("alice")),
        409,
        "conflict",
    )
    assert (
        client.simulate_post(_mirror_path(name) + "/sync-now", headers=basic("alice")).status_code
        == 204
    )
    assert _get(client, name)["sync_status"] == "SYNC_NOW"
    assert (
        client.simulate_post(
            _mirror_path(name) + "/sync-cancel", headers=basic("alice")
        ).status_code
        == 204
    )
    assert _get(client, name)["sync_status"] == "CANCEL"


# -- syncing -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["open", "basic", "token"])
def test_a_sync_copies_matching_tags_byte_identical_and_removes_deleted_ones(
    request: pytest.FixtureRequest,
    container: Container,
    client: falcon.testing.TestClient,
    kind: str,
) -> None:
    upstream: Upstream = request.getfixturevalue(f"{kind}_upstream")
    path = f"team/app{uuid.uuid4().hex[:6]}"
    v1 = upstream.push_image(path, "v1", layers=2)
    v2 = upstream.push_image(path, "v2")
    upstream.push_image(path, "latest")  # no glob matches it
    name = _repo(container)
    _configure(client, name, _config(upstream, path))
    assert _run(container, name) == 1
    got = _get(client, name)
    assert got["sync_status"] == "SUCCESS", got
    assert got["sync_progress"]["tags_total"] == 2
    assert got["sync_progress"]["tags_synced"] == 2
    assert got["sync_progress"]["bytes"] > 0
    assert _tags(container, name) == {"v1": v1["digest"], "v2": v2["digest"]}
    assert _blob(container, v1["digest"]) == v1["manifest"]
    for digest in v1["blobs"]:
        r = client.simulate_get(f"/v2/{name}/blobs/{digest}", headers=basic("alice"))
        assert r.status_code == 200 and Digest.of(r.content) == Digest.parse(digest)
    kinds = [k for k, _ in _audit(container, name)]
    assert "repo_mirror_sync_started" in kinds and kinds.count("repo_mirror_sync_tag_success") == 2
    assert kinds[-1] == "repo_mirror_sync_success"
    if kind == "token":
        assert upstream.token_server is not None
        # One token for the repository's pull scope, cached across the sync's requests.
        assert upstream.token_server.token_requests <= 2
    # Not due again before its interval; a sync-now makes it due.
    assert _run(container, name) == 0
    upstream.delete_manifest(path, v2["digest"])
    assert (
        client.simulate_post(_mirror_path(name) + "/sync-now", headers=basic("alice")).status_code
        == 204
    )
    assert _run(container, name) == 1
    assert _tags(container, name) == {"v1": v1["digest"]}
    got = _get(client, name)
    assert got["sync_status"] == "SUCCESS" and got["sync_progress"]["tags_removed"] == 1
    assert got["sync_progress"]["bytes"] == 0  # v1 was current: nothing moved
    assert "repo_mirror_sync_tag_removed" in [k for k, _ in _audit(container, name)]


def test_wrong_credentials_fail_with_a_clear_message_and_fewer_retries(
    container: Container, client: falcon.testing.TestClient, basic_upstream: Upstream
) -> None:
    path = f"team/app{uuid.uuid4().hex[:6]}"
    basic_upstream.push_image(path, "v1")
    name = _repo(container)
    wrong = "wrong-password-123456"
    _configure(client, name, _config(basic_upstream, path, external_registry_password=wrong))
    assert _run(container, name) == 1
    got = _get(client, name)
    assert got["sync_status"] == "FAIL"
    assert got["sync_retries_remaining"] == 2
    assert "refused the credentials" in got["last_error"]
    audit = _audit(container, name)
    assert audit[-1][0] == "repo_mirror_sync_failed"
    assert "refused the credentials" in audit[-1][1]["message"]
    assert wrong not in json.dumps(audit) and wrong not in json.dumps(got)
    assert _tags(container, name) == {}
    # Retries left: due again at once; after three failures it waits for the interval.
    assert _run(container, name) == 1 and _run(container, name) == 1
    got = _get(client, name)
    assert got["sync_retries_remaining"] == 3 and got["sync_start_date"] != PAST
    assert _run(container, name) == 0


def test_an_unreachable_upstream_fails_the_sync_and_the_next_one_resumes(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = f"team/app{uuid.uuid4().hex[:6]}"
    v1 = open_upstream.push_image(path, "v1")
    name = _repo(container)
    _configure(client, name, _config(open_upstream, path))
    open_upstream.stop()
    try:
        assert _run(container, name) == 1
        got = _get(client, name)
        assert got["sync_status"] == "FAIL" and "unreachable" in got["last_error"]
        assert _tags(container, name) == {}
    finally:
        open_upstream.start()
    assert _run(container, name) == 1
    assert _get(client, name)["sync_status"] == "SUCCESS"
    assert _tags(container, name) == {"v1": v1["digest"]}


def test_an_upstream_that_breaks_off_mid_blob_fails_the_sync_and_leaves_no_half_tag(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = f"team/cut{uuid.uuid4().hex[:6]}"
    v1 = open_upstream.push_image(path, "v1", layer_size=2 * 1024 * 1024)
    layer = Digest.parse(v1["blobs"][-1])
    name = _repo(container)
    with running_proxy(open_upstream.url) as proxy:
        body = _config(open_upstream, path)
        body["external_reference"] = f"{proxy.registry}/{path}"
        _configure(client, name, body)
        proxy.cut_after = 512 * 1024
        assert _run(container, name) == 1
        got = _get(client, name)
        assert got["sync_status"] == "FAIL" and "broke" in got["last_error"], got
        assert _tags(container, name) == {}
        assert not container.blobs.exists(layer)  # nothing half-written
        proxy.cut_after = None
        assert _run(container, name) == 1  # a retry is due at once
    assert _get(client, name)["sync_status"] == "SUCCESS"
    assert _tags(container, name) == {"v1": v1["digest"]}
    assert _blob(container, str(layer)) == _upstream_blob_of(open_upstream, path, str(layer))


def _upstream_blob_of(upstream: Upstream, path: str, digest: str) -> bytes:
    with upstream.client(path) as http:
        r = http.get(f"/v2/{path}/blobs/{digest}")
        r.raise_for_status()
        return r.content


def test_a_mirror_goes_with_its_repository_and_a_recreated_one_is_mirrored_afresh(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = f"team/again{uuid.uuid4().hex[:6]}"
    v1 = open_upstream.push_image(path, "v1")
    name = _repo(container)
    _configure(client, name, _config(open_upstream, path))
    assert _run(container, name) == 1
    # The mirror's robot cannot go while the mirror writes as it (Quay: 400).
    r = client.simulate_delete("/api/v1/organization/acme/robots/mirror", headers=basic("alice"))
    assert "being used by a mirror" in assert_error(r, 400, "invalid_request")["detail"]
    r = client.simulate_delete(f"/api/v1/repository/{name}", headers=basic("alice"))
    assert r.status_code == 204, r.text
    assert container.mirror_queries.due(container.queries.now_ms() + 10**9) == []
    namespace, short = name.split("/")
    r = send_json(
        client,
        "POST",
        "/api/v1/repository",
        {"namespace": namespace, "repository": short, "visibility": "private", "description": ""},
        basic("alice"),
    )
    assert r.status_code == 201, r.text
    # The new life of the name has no mirror until one is configured again.
    assert_error(client.simulate_get(_mirror_path(name), headers=basic("alice")), 404, "not_found")
    _configure(client, name, _config(open_upstream, path))
    assert _get(client, name)["sync_status"] == "NEVER_RUN"
    assert _run(container, name) == 1
    assert _tags(container, name) == {"v1": v1["digest"]}
    kinds = [k for k, _ in _audit(container, name)]
    assert "repo_mirror_deleted" in kinds
    assert kinds.count("repo_mirror_enabled") == 2
    assert verify(container, quiet=True).differences == ()
    # With its mirror gone with the repository, the robot may go.
    assert (
        client.simulate_delete(f"/api/v1/repository/{name}", headers=basic("alice")).status_code
        == 204
    )
    r = client.simulate_delete("/api/v1/organization/acme/robots/mirror", headers=basic("alice"))
    assert r.status_code == 204, r.text


def test_an_architecture_filter_makes_a_sparse_index(
    container: Container, client: falcon.testing.TestClient, open_upstream: Upstream
) -> None:
    path = f"team/multi{uuid.uuid4().hex[:6]}"
    pushed = open_upstream.push_image(path, "v1", platforms=["linux/amd64", "linux/arm64"])
    name = _repo(container)
    _configure(client, name, _config(open_upstream, path, architecture_filter=["arm64"]))
    assert _run(container, name) == 1
    assert _get(client, name)["sync_status"] == "SUCCESS"
    assert _tags(container, name) == {"v1": pushed["digest"]}
    repo = container.registry.current(RepositoryName(name))
    assert repo is not None
    children = pushed["children"]
    assert Digest.parse(children["linux/arm64"]) in repo.manifests
    assert Digest.parse(children["linux/amd64"]) not in repo.manifests
    r = client.simulate_get(f"/v2/{name}/manifests/v1", headers=basic("alice"))
    assert r.status_code == 200 and r.content == pushed["manifest"]
