"""Tags and the time machine on /api/v1 (QUAY-API.md section 8), the namespace window on
the org and user resources, the ``quay.expires-after`` label through /v2, and the
sweeper. The wall clock is injected (``ManualClock``): no test sleeps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap, ensure_admin
from cargohold.config import load_settings
from cargohold.domain.identity import AccountName, ApiScope
from cargohold.domain.repository import Repository
from cargohold.domain.values import Actor, RepositoryName, Tag
from tests.factories import ManualClock
from tests.fixtures.digests import sha256
from tests.operations import sweep_expired_tags
from tests.unit.api_v1.support import (
    OCI_MANIFEST,
    PASSWORDS,
    SYSTEM,
    api_token,
    assert_error,
    basic,
    make_client,
    push_image,
    send_json,
)

# NOTE: the injected clock starts at the real time, whole seconds: API tokens are
# checked against the real clock.
T0 = time.time_ns() // 1_000_000_000 * 1000
DAY = 86_400
WEB = "/api/v1/repository/alice/web"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def container(tmp_path: Path, clock: ManualClock) -> Iterator[Container]:
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp_path / "data", "admin_password": PASSWORDS["admin"]},
    )
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap(), wall_ms=clock)
    try:
        assert ensure_admin(c) is None
        for name in ("alice", "bob"):
            c.identity.create_user(AccountName(name), f"{name}@x.io", PASSWORDS[name], SYSTEM)
        yield c
    finally:
        c.close()


ALICE = basic("alice")


def listing(client: falcon.testing.TestClient, **params: Any) -> dict[str, Any]:
    r = client.simulate_get(WEB + "/tag/", params=params, headers=ALICE)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def push_two(client: falcon.testing.TestClient, clock: ManualClock) -> tuple[str, str]:
    first = push_image(client, "alice/web", ALICE, tags=("latest",))
    clock.advance(120)
    second = push_labelled(client, "alice/web", "latest", labels={"v": "2"})
    return first, second


def push_labelled(
    client: falcon.testing.TestClient,
    name: str,
    tag: str,
    labels: dict[str, Any] | None,
    config_type: str = "application/vnd.oci.image.config.v1+json",
) -> str:
    """Push through /v2 an image whose config has ``labels``; returns its digest."""
    config = json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()
    layer = f"layer of {name} {labels}".encode()
    for blob in (config, layer):
        r = client.simulate_post(
            f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, body=blob, headers=ALICE
        )
        assert r.status_code == 201, r.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.simulate_put(
        f"/v2/{name}/manifests/{tag}",
        body=manifest,
        headers={**ALICE, "Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return sha256(manifest)


def v2_status(client: falcon.testing.TestClient, tag: str) -> int:
    r = client.simulate_get(
        f"/v2/alice/web/manifests/{tag}", headers={**ALICE, "Accept": OCI_MANIFEST}
    )
    return r.status_code


# -- listing -----------------------------------------------------------------------------


def test_the_listing_shows_the_history_newest_first(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    first, second = push_two(client, clock)
    body = listing(client)
    assert body["page"] == 1 and body["has_additional"] is False
    live, dead = body["tags"]
    assert live["name"] == dead["name"] == "latest"
    assert (live["manifest_digest"], dead["manifest_digest"]) == (second, first)
    assert "end_ts" not in live and "expiration" not in live
    assert dead["end_ts"] == live["start_ts"] == (T0 + 120_000) // 1000
    assert dead["start_ts"] == T0 // 1000
    assert parsedate_to_datetime(dead["expiration"]).timestamp() == dead["end_ts"]
    assert parsedate_to_datetime(live["last_modified"]).timestamp() == live["start_ts"]
    assert live["reversion"] is False and live["is_manifest_list"] is False
    assert isinstance(live["size"], int) and live["size"] > 0

    active = listing(client, onlyActiveTags="true")["tags"]
    assert [t["manifest_digest"] for t in active] == [second]


def test_the_listing_pages_and_filters_one_tag_exactly(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    for name in ("a", "b", "ab", "c"):
        push_image(client, "alice/web", ALICE, tags=(name,))
        clock.advance(1)
    page1 = listing(client, limit="3")
    page2 = listing(client, limit="3", page="2")
    assert [t["name"] for t in page1["tags"]] == ["c", "ab", "b"]
    assert page1["has_additional"] is True
    assert [t["name"] for t in page2["tags"]] == ["a"]
    assert page2 == {**page2, "page": 2, "has_additional": False}
    assert [t["name"] for t in listing(client, specificTag="a")["tags"]] == ["a"]
    # Quay clamps limit and page rather than refusing them.
    assert len(listing(client, limit="0")["tags"]) == 1
    assert listing(client, page="-4")["page"] == 1


@pytest.mark.parametrize(
    "params",
    [{"page": "x"}, {"limit": "1.5"}, {"onlyActiveTags": "maybe"}, {"page": "99999999999"}],
)
def test_bad_listing_parameters_are_400(
    client: falcon.testing.TestClient, params: dict[str, str]
) -> None:
    push_image(client, "alice/web", ALICE)
    r = client.simulate_get(WEB + "/tag/", params=params, headers=ALICE)
    assert_error(r, 400, "invalid_request")


def test_the_listing_needs_read_permission(client: falcon.testing.TestClient) -> None:
    push_image(client, "alice/web", ALICE)
    assert_error(client.simulate_get(WEB + "/tag/"), 401, "invalid_token")
    assert_error(
        client.simulate_get(WEB + "/tag/", headers=basic("bob")), 403, "insufficient_scope"
    )
    r = client.simulate_get("/api/v1/repository/alice/none/tag/", headers=ALICE)
    assert_error(r, 404, "not_found")


# -- PUT, DELETE, restore ----------------------------------------------------------------


def test_put_moves_a_tag_and_delete_removes_it(client: falcon.testing.TestClient) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    r = send_json(client, "PUT", WEB + "/tag/stable", {"manifest_digest": digest}, ALICE)
    assert r.status_code == 201 and r.json == "Updated"
    assert v2_status(client, "stable") == 200

    r = client.simulate_delete(WEB + "/tag/stable", headers=ALICE)
    assert r.status_code == 204
    assert v2_status(client, "stable") == 404
    assert_error(client.simulate_delete(WEB + "/tag/stable", headers=ALICE), 404, "not_found")


@pytest.mark.parametrize(
    ("tag", "payload", "status"),
    [
        ("-bad", {"manifest_digest": None}, 400),
        ("v1", {"manifest_digest": "sha256:nothex"}, 400),
        ("v1", {"manifest_digest": 5}, 400),
        ("v1", {"manifest_digest": "sha256:" + "0" * 64}, 404),
        ("v1", {"expiration": "tomorrow"}, 400),
        ("v1", {"expiration": 1e300}, 400),
        ("v1", {"expiration": True}, 400),
        ("v1", {"expiration": 100}, 400),  # in the past
        ("nope", {"expiration": None}, 404),
    ],
)
def test_put_refuses_bad_input(
    client: falcon.testing.TestClient, tag: str, payload: dict[str, Any], status: int
) -> None:
    push_image(client, "alice/web", ALICE, tags=("v1",))
    r = send_json(client, "PUT", WEB + f"/tag/{tag}", payload, ALICE)
    assert_error(r, status, "invalid_request" if status == 400 else "not_found")


def test_writes_need_write_permission(
    container: Container, client: falcon.testing.TestClient
) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    read_only = api_token(container, "alice", ApiScope.REPO_READ)
    for method, path, payload in (
        ("PUT", "/tag/v1", {"expiration": None}),
        ("DELETE", "/tag/v1", None),
        ("POST", "/tag/v1/restore", {"manifest_digest": digest}),
    ):
        r = send_json(client, method, WEB + path, payload, read_only)
        assert_error(r, 403, "insufficient_scope")
        assert_error(send_json(client, method, WEB + path, payload), 401, "invalid_token")


def test_restore_brings_a_deleted_tag_back_within_the_window(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    assert client.simulate_delete(WEB + "/tag/v1", headers=ALICE).status_code == 204
    clock.advance(13 * DAY)

    r = send_json(client, "POST", WEB + "/tag/v1/restore", {"manifest_digest": digest}, ALICE)
    assert r.status_code == 200 and r.json == {}
    assert v2_status(client, "v1") == 200
    newest = listing(client)["tags"][0]
    assert newest["reversion"] is True and newest["manifest_digest"] == digest


def test_restore_is_refused_past_the_window_and_for_other_manifests(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    other = push_labelled(client, "alice/web", "v2", labels=None)
    assert client.simulate_delete(WEB + "/tag/v1", headers=ALICE).status_code == 204

    restore = WEB + "/tag/v1/restore"
    assert_error(
        send_json(client, "POST", restore, {"manifest_digest": other}, ALICE), 404, "not_found"
    )
    assert_error(send_json(client, "POST", restore, {}, ALICE), 400, "invalid_request")
    assert_error(
        send_json(client, "POST", restore, {"manifest_digest": "md5:x"}, ALICE),
        400,
        "invalid_request",
    )
    clock.advance(14 * DAY + 1)
    assert_error(
        send_json(client, "POST", restore, {"manifest_digest": digest}, ALICE), 404, "not_found"
    )


def test_restore_re_adds_a_manifest_deleted_through_v2(
    client: falcon.testing.TestClient,
) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    r = client.simulate_delete(f"/v2/alice/web/manifests/{digest}", headers=ALICE)
    assert r.status_code == 202, r.text
    assert v2_status(client, digest) == 404

    r = send_json(client, "POST", WEB + "/tag/v1/restore", {"manifest_digest": digest}, ALICE)
    assert r.status_code == 200, r.text
    assert v2_status(client, "v1") == 200
    assert v2_status(client, digest) == 200


# -- expiration, expiry, the sweeper -----------------------------------------------------


def test_an_expired_tag_is_gone_at_once_and_the_sweeper_records_it(
    container: Container, client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    expires = T0 // 1000 + 3600
    r = send_json(client, "PUT", WEB + "/tag/v1", {"expiration": expires}, ALICE)
    assert r.status_code == 201
    (live,) = listing(client)["tags"]
    assert live["end_ts"] == expires
    assert parsedate_to_datetime(live["expiration"]).timestamp() == expires

    clock.advance(3600)  # the expiration is reached: not served, before any sweep
    assert v2_status(client, "v1") == 404
    assert client.simulate_get("/v2/alice/web/tags/list", headers=ALICE).json["tags"] == []
    assert listing(client, onlyActiveTags="true")["tags"] == []
    assert sweep_expired_tags(container) == 1
    assert sweep_expired_tags(container) == 0

    history = container.queries.tag_history(RepositoryName("alice/web"), Tag("v1"))
    assert [(h.action, h.actor) for h in history] == [
        ("move", "user:alice"),
        ("expire", f"system:{Actor.system().name}"),
    ]
    (dead,) = listing(client)["tags"]
    assert dead["end_ts"] == expires
    # Restorable: the window counts from the expiry.
    r = send_json(client, "POST", WEB + "/tag/v1/restore", {"manifest_digest": digest}, ALICE)
    assert r.status_code == 200 and v2_status(client, "v1") == 200


def test_clearing_an_expiration_keeps_the_tag(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    push_image(client, "alice/web", ALICE, tags=("v1",))
    send_json(client, "PUT", WEB + "/tag/v1", {"expiration": T0 // 1000 + 60}, ALICE)
    r = send_json(client, "PUT", WEB + "/tag/v1", {"expiration": None}, ALICE)
    assert r.status_code == 201
    clock.advance(120)
    assert v2_status(client, "v1") == 200
    assert "end_ts" not in listing(client)["tags"][0]


def test_the_expires_after_label_sets_the_expiration_of_a_push_by_tag(
    container: Container, client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    push_labelled(client, "alice/web", "nightly", {"quay.expires-after": "2d"})
    push_labelled(client, "alice/web", "junk", {"quay.expires-after": "soon"})
    push_labelled(client, "alice/web", "plain", {"maintainer": "alice"})
    ends = {t["name"]: t.get("end_ts") for t in listing(client)["tags"]}
    assert ends == {"nightly": T0 // 1000 + 2 * DAY, "junk": None, "plain": None}

    clock.advance(2 * DAY)
    assert v2_status(client, "nightly") == 404
    assert v2_status(client, "junk") == 200
    sweep_expired_tags(container)
    repo = container.log.repository.get(
        Repository.create_id(container.site_id, RepositoryName("alice/web"))
    )
    assert Tag("nightly") not in repo.tags and Tag("junk") in repo.tags


# -- the namespace window ----------------------------------------------------------------


def test_the_org_window_is_shown_to_admins_and_set_from_the_options(
    container: Container, client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    r = send_json(client, "POST", "/api/v1/organization/", {"name": "acme"}, ALICE)
    assert r.status_code == 201
    org = "/api/v1/organization/acme"
    assert client.simulate_get(org, headers=ALICE).json["tag_expiration_s"] == 14 * DAY
    assert "tag_expiration_s" not in client.simulate_get(org, headers=basic("bob")).json

    r = send_json(client, "PUT", org, {"tag_expiration_s": DAY}, ALICE)
    assert r.status_code == 200 and r.json["tag_expiration_s"] == DAY
    assert_error(
        send_json(client, "PUT", org, {"tag_expiration_s": 5}, ALICE), 400, "invalid_request"
    )
    assert_error(
        send_json(client, "PUT", org, {"tag_expiration_s": "1d"}, ALICE), 400, "invalid_request"
    )
    assert_error(
        send_json(client, "PUT", org, {"tag_expiration_s": 0}, basic("bob")),
        403,
        "insufficient_scope",
    )

    # The window decides restores: a day, not two weeks.
    digest = push_image(client, "acme/web", ALICE, tags=("v1",))
    client.simulate_delete("/api/v1/repository/acme/web/tag/v1", headers=ALICE)
    clock.advance(DAY + 1)
    r = send_json(
        client,
        "POST",
        "/api/v1/repository/acme/web/tag/v1/restore",
        {"manifest_digest": digest},
        ALICE,
    )
    assert_error(r, 404, "not_found")


def test_the_user_window_is_shown_and_set(
    client: falcon.testing.TestClient, clock: ManualClock
) -> None:
    assert client.simulate_get("/api/v1/user/", headers=ALICE).json["tag_expiration_s"] == 14 * DAY
    r = send_json(client, "PUT", "/api/v1/user/", {"tag_expiration_s": 0}, ALICE)
    assert r.status_code == 200 and r.json["tag_expiration_s"] == 0
    r = send_json(client, "PUT", "/api/v1/user/", {"email": "x@y.z"}, ALICE)
    assert_error(r, 400, "invalid_request")
    assert_error(
        send_json(client, "PUT", "/api/v1/user/", {"tag_expiration_s": 0}), 401, "invalid_token"
    )

    # A window of zero: nothing is restorable.
    digest = push_image(client, "alice/web", ALICE, tags=("v1",))
    client.simulate_delete(WEB + "/tag/v1", headers=ALICE)
    clock.advance(1)
    r = send_json(client, "POST", WEB + "/tag/v1/restore", {"manifest_digest": digest}, ALICE)
    assert_error(r, 404, "not_found")


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return make_client(container)
