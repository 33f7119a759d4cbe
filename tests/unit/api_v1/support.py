"""The /api/v1 test harness: a container on SQLite with a cheap hasher, a falcon
TestClient, credential helpers, the error-body check, content builders."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import falcon
import falcon.testing

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap, ensure_admin
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.identity import AccountName, ApiScope, Visibility
from cargohold.domain.values import Actor, RepositoryName
from cargohold.http import api_v1
from cargohold.http.app import api_v1_router, create_app
from tests.fixtures.digests import sha256

SYSTEM = Caller(Actor.system(), "test")
PASSWORDS = {"admin": "admin-pw-1", "alice": "alice-pw-1", "bob": "bob-pw-1", "carol": "carol-pw-1"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ERROR_KEYS = {"status", "title", "type", "detail", "error_message", "error_type"}


def make_container(tmp_path: Path) -> Container:
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp_path / "data", "admin_password": PASSWORDS["admin"]},
    )
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    assert ensure_admin(c) is None
    for name in ("alice", "bob", "carol"):
        c.identity.create_user(AccountName(name), f"{name}@example.com", PASSWORDS[name], SYSTEM)
    return c


def make_client(container: Container) -> falcon.testing.TestClient:
    app = create_app(container)
    # NOTE: harmless if create_app mounts /api/v1 itself: the later sink wins, and both
    # serve the same routes.
    api_v1.register(app, api_v1_router(container))
    return falcon.testing.TestClient(app)


def basic(user: str, secret: str | None = None) -> dict[str, str]:
    raw = f"{user}:{PASSWORDS[user] if secret is None else secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_token(container: Container, user: str, *scopes: ApiScope) -> dict[str, str]:
    """Bearer headers of a fresh API token of ``user`` with ``scopes``."""
    _, token = container.identity.issue_api_token(AccountName(user), scopes, SYSTEM)
    return bearer(token)


def send_json(
    client: falcon.testing.TestClient,
    method: str,
    path: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> falcon.testing.Result:
    body = None if payload is None else json.dumps(payload)
    return client.simulate_request(method, path, body=body, headers=headers, **kwargs)


def assert_error(r: falcon.testing.Result, status: int, title: str) -> dict[str, Any]:
    """``r`` is Quay's error body with ``status`` and ``title``; returns it."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status
    assert body["title"] == body["error_type"] == title
    assert body["type"].endswith(f"/api/v1/error/{title}")
    assert body["detail"] == body["error_message"] and body["detail"]
    assert "Traceback" not in r.text
    return body


def create_repository(
    container: Container, name: str, visibility: Visibility = Visibility.PRIVATE
) -> RepositoryName:
    repo = RepositoryName(name)
    container.registry.create_repository(repo, SYSTEM, visibility)
    return repo


def push_image(
    client: falcon.testing.TestClient,
    name: str,
    headers: dict[str, str],
    tags: Sequence[str] = ("v1",),
) -> str:
    """Push a one-layer image through /v2 under ``tags``; returns the manifest digest."""
    config = json.dumps({"repo": name}).encode()
    layer = f"layer of {name}".encode()
    for blob in (config, layer):
        r = client.simulate_post(
            f"/v2/{name}/blobs/uploads/",
            params={"digest": sha256(blob)},
            body=blob,
            headers=headers,
        )
        assert r.status_code == 201, r.text
    manifest = json.dumps(
        {
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
    ).encode()
    for tag in tags:
        r = client.simulate_put(
            f"/v2/{name}/manifests/{tag}",
            body=manifest,
            headers={**headers, "Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201, r.text
    return sha256(manifest)
