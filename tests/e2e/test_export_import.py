"""Air-gapped transfer between two live registries that share nothing.

Site A (cipher key on) and site B (none) each run ``cargohold serve`` with access control
on, in their own data dirs. At A, alice pushes three repositories over /v2 (a tag moved,
a tag deleted) and, over /api/v1, makes the organisation ``acme`` with the team ``devs``
(bob), the robot ``acme+ci`` and grants. ``cargohold export`` runs at A and
``cargohold import`` at B *while B serves* (what an operator would do: B keeps serving
its own repositories). Then, at B: every image pulls byte-identical (manifests and
blobs, over HTTP and with skopeo through the token flow as the imported alice); tag
history and grants match A's; the robot's token works; a push or a grant to an imported
repository is refused, saying where it is managed. A second export ``--since`` the
printed position carries only the new events and blobs, and brings the new image.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import bootstrap, ensure_admin
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.identity import AccountName
from cargohold.domain.values import Actor
from cargohold.replay.bundle_format import BlobStart, BundleReader, EventFrame
from tests.fixtures.digests import sha256
from tests.fixtures.server import BASE_ENV, Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.tools import registry_host, run_tool, skopeo_command
from tests.fixtures.v2client import OCI_MANIFEST, Response, V2Client

pytestmark = pytest.mark.timeout(300)

CIPHER_KEY = base64.b64encode(b"export-e2e-cipher-key-32-bytes!!").decode()
PASSWORDS = {"admin": "admin-pw-0123", "alice": "alice-pw-0123", "bob": "bob-pw-0123"}
REPOS = ("acme/app", "acme/web", "alice/tool")


def _auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ALICE = _auth("alice", PASSWORDS["alice"])


class Client(V2Client):
    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Response:
        data = None if body is None else json.dumps(body).encode()
        h = {**ALICE, "Content-Type": "application/json", **headers}
        return self.request(method, path, body=data, headers=h)

    def blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.request(
            "POST", f"/v2/{name}/blobs/uploads/?digest={digest}", body=data, headers=ALICE
        )
        assert r.status == 201, (r.status, r.body[:300])
        return digest

    def push(self, name: str, tag: str, seed: str) -> str:
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        layer = os.urandom(4096) + seed.encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": self.blob(name, config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": self.blob(name, layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        r = self.request(
            "PUT",
            f"/v2/{name}/manifests/{tag}",
            body=manifest,
            headers={**ALICE, "Content-Type": OCI_MANIFEST},
        )
        assert r.status == 201, (r.status, r.body[:300])
        return sha256(manifest)

    def image(self, name: str, reference: str, auth: dict[str, str] = ALICE) -> dict[str, bytes]:
        """Every byte of an image: its manifest and each blob, by digest."""
        accept = {"Accept": OCI_MANIFEST}
        r = self.request("GET", f"/v2/{name}/manifests/{reference}", headers={**auth, **accept})
        assert r.status == 200, (name, reference, r.status, r.body[:300])
        found = {"manifest": r.body}
        manifest = json.loads(r.body)
        for d in [manifest["config"], *manifest["layers"]]:
            blob = self.request("GET", f"/v2/{name}/blobs/{d['digest']}", headers=auth)
            assert blob.status == 200 and sha256(blob.body) == d["digest"]
            found[d["digest"]] = blob.body
        return found


def _cli(*args: str, data: Path, cipher: bool) -> subprocess.CompletedProcess[str]:
    env = {**BASE_ENV, **({"CARGOHOLD_CIPHER_KEY": CIPHER_KEY} if cipher else {})}
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli", *args, "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _prepare(data: Path, cipher: bool, users: tuple[str, ...]) -> None:
    overrides: dict[str, Any] = {"data_dir": data, "admin_password": PASSWORDS["admin"]}
    if cipher:
        overrides["cipher_key"] = CIPHER_KEY
    c = bootstrap(
        load_settings(environ={}, overrides=overrides), hasher=Argon2PasswordHasher.cheap()
    )
    try:
        ensure_admin(c)
        for user in users:
            c.identity.create_user(
                AccountName(user),
                f"{user}@example.com",
                PASSWORDS[user],
                Caller(Actor.system(), "e2e"),
            )
    finally:
        c.close()


def _serve(root: Path, data: Path, cipher: bool) -> Any:
    env = {"CARGOHOLD_AUTH": "on", "CARGOHOLD_ADMIN_PASSWORD": PASSWORDS["admin"]}
    if cipher:
        env["CARGOHOLD_CIPHER_KEY"] = CIPHER_KEY
    listen = f"127.0.0.1:{free_port()}"
    return serving("--data-dir", str(data), "--listen", listen, cwd=root, env=env)


def _history(c: Client, name: str) -> list[tuple[Any, ...]]:
    r = c.call("GET", f"/api/v1/repository/{name}/tag/?onlyActiveTags=false&limit=100")
    assert r.status == 200, r.body
    return sorted(
        (t["name"], t["manifest_digest"], t.get("start_ts"), t.get("end_ts"))
        for t in r.json()["tags"]
    )


def _grants(c: Client, name: str) -> dict[str, Any]:
    users = c.call("GET", f"/api/v1/repository/{name}/permissions/user/")
    teams = c.call("GET", f"/api/v1/repository/{name}/permissions/team/")
    assert users.status == 200 and teams.status == 200, (users.body, teams.body)
    return {"users": users.json(), "teams": teams.json()}


def _frames(path: Path) -> list[Any]:
    with path.open("rb") as f:
        return list(BundleReader(f, str(path)).frames())


def test_three_repositories_move_to_a_site_that_shares_nothing(tmp_path: Path) -> None:
    data_a, data_b = tmp_path / "a", tmp_path / "b"
    _prepare(data_a, cipher=True, users=("alice", "bob"))
    _prepare(data_b, cipher=False, users=())
    with _serve(tmp_path, data_a, cipher=True) as a, _serve(tmp_path, data_b, cipher=False) as b:
        _check_transfer(tmp_path, a, b, data_a, data_b)


def _check_transfer(tmp: Path, a: Server, b: Server, data_a: Path, data_b: Path) -> None:
    ca, cb = Client(a.url), Client(b.url)
    # -- history at A ----------------------------------------------------------------
    assert ca.call("POST", "/api/v1/organization/", {"name": "acme"}).status == 201
    assert ca.call("PUT", "/api/v1/organization/acme/team/devs", {"role": "member"}).status == 200
    assert ca.call("PUT", "/api/v1/organization/acme/team/devs/members/bob", {}).status == 200
    robot = ca.call("PUT", "/api/v1/organization/acme/robots/ci", {})
    assert robot.status in (200, 201), robot.body
    robot_token = robot.json()["token"]
    tags = {
        ("acme/app", "latest"): [ca.push("acme/app", "latest", "a1")],
        ("acme/app", "v1"): [ca.push("acme/app", "v1", "a2")],
        ("acme/web", "latest"): [ca.push("acme/web", "latest", "w1")],
        ("alice/tool", "1.0"): [ca.push("alice/tool", "1.0", "t1")],
    }
    tags[("acme/app", "latest")].append(ca.push("acme/app", "latest", "a3"))  # moved
    ca.push("acme/app", "old", "a4")
    assert ca.call("DELETE", "/api/v1/repository/acme/app/tag/old").status == 204
    for path, role in [
        ("acme/app/permissions/user/acme+ci", "write"),
        ("acme/web/permissions/team/devs", "read"),
        ("alice/tool/permissions/user/bob", "read"),
    ]:
        r = ca.call("PUT", f"/api/v1/repository/{path}", {"role": role})
        assert r.status == 200, (path, r.body)

    # -- export at A, import at B while B serves ---------------------------------------
    bundle = tmp / "first.bundle"
    exported = _cli("export", "--repos", "acme/*,alice/tool", str(bundle), data=data_a, cipher=True)
    assert exported.returncode == 0, exported.stderr
    since = int(re.search(r"next export: --since (\d+)", exported.stdout).group(1))  # type: ignore[union-attr]
    assert "blobs" in exported.stderr  # the progress bars
    imported = _cli("import", str(bundle), data=data_b, cipher=False)
    assert imported.returncode == 0, imported.stderr
    again = _cli("import", "--quiet", str(bundle), data=data_b, cipher=False)
    assert again.returncode == 0 and "imported 0 events" in again.stdout, again.stdout

    # -- at B: images, history, grants, credentials -------------------------------------
    for (name, tag), digests in tags.items():
        assert cb.image(name, tag) == ca.image(name, tag)
        for digest in digests:
            assert cb.image(name, digest) == ca.image(name, digest)
    catalog = cb.request("GET", "/v2/_catalog", headers=_auth("admin", PASSWORDS["admin"]))
    assert catalog.json()["repositories"] == sorted(REPOS)
    for name in REPOS:
        assert _history(cb, name) == _history(ca, name)
        assert _grants(cb, name) == _grants(ca, name)
    assert ("old", None) not in {(h[0], h[3]) for h in _history(cb, "acme/app")}
    robot_auth = _auth("acme+ci", robot_token)
    assert cb.image("acme/app", "latest", robot_auth) == ca.image("acme/app", "latest")
    bob = _auth("bob", PASSWORDS["bob"])
    assert cb.image("acme/web", "latest", bob)["manifest"]  # through the team's grant
    denied = cb.request("GET", "/v2/acme/app/manifests/latest", headers=bob)
    assert denied.status == 403
    _skopeo_pull(cb, b, tmp)

    # -- imported repositories are read-only at B ---------------------------------------
    refused = cb.request(
        "POST", "/v2/acme/app/blobs/uploads/", headers={**ALICE, "Content-Length": "0"}
    )
    assert refused.status == 403 and refused.json()["errors"][0]["code"] == "DENIED"
    assert "replicated from site" in refused.json()["errors"][0]["message"]
    grant = cb.call("PUT", "/api/v1/repository/acme/app/permissions/user/bob", {"role": "read"})
    assert grant.status == 403 and "replicated from site" in grant.json()["detail"]

    # -- a second export since the printed position ---------------------------------------
    new = ca.push("acme/app", "v2", "a5")
    second = tmp / "second.bundle"
    exported = _cli(
        "export", "--quiet", "--since", str(since), "--repos", "acme/*,alice/tool",
        str(second), data=data_a, cipher=True,
    )  # fmt: skip
    assert exported.returncode == 0 and exported.stderr == "", exported.stderr
    frames = _frames(second)
    events = [f for f in frames if isinstance(f, EventFrame)]
    blobs = {f.digest for f in frames if isinstance(f, BlobStart)}
    assert events and all(f.position > since for f in events)
    manifest = json.loads(ca.image("acme/app", "v2")["manifest"])
    new_blobs = {new, manifest["config"]["digest"], manifest["layers"][0]["digest"]}
    assert blobs == new_blobs
    imported = _cli("import", str(second), data=data_b, cipher=False)
    assert imported.returncode == 0, imported.stderr
    assert cb.image("acme/app", "v2") == ca.image("acme/app", "v2")
    verified = _cli("replay", "verify", "--quiet", data=data_b, cipher=False)
    assert verified.returncode == 0, verified.stdout


def _skopeo_pull(cb: Client, b: Server, tmp: Path) -> None:
    """A real client through the token flow, as the imported alice: the raw manifest and
    a digest-preserving copy are byte-identical to what B serves."""
    src = f"docker://{registry_host(b.url)}/acme/app:latest"
    creds = f"alice:{PASSWORDS['alice']}"
    raw = run_tool(skopeo_command("inspect", "--raw", "--creds", creds, src), text=False)
    image = cb.image("acme/app", "latest")
    assert raw.stdout == image["manifest"]
    out = tmp / "pulled"
    copy = ["--preserve-digests", "--src-creds", creds, src, f"oci:{out}:latest"]
    run_tool(skopeo_command("copy", *copy))
    for digest, body in image.items():
        if digest != "manifest":
            assert (out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == body
