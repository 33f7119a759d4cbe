"""Token auth with the real clients (skopeo, crane, oras) against a live server.

One server for the module, with access control on and a cipher key. Before it starts, the
data dir gets (through the same commands the API uses) the superuser ``admin``, users
``alice`` and ``bob``, the organisation ``acme`` owned by alice with the robot
``acme+ci`` (default permission: write), the repository ``acme/web`` and the public
repository ``alice/public``. Then:

- alice logs in (skopeo ``login``, podman's flow) and pushes and pulls, byte-identical;
- bob is DENIED on alice's private repository; an anonymous client is UNAUTHORIZED;
- the robot, logged in with crane, copies into ``acme/web`` from the public repository
  and is DENIED creating a repository;
- oras pulls the public repository anonymously and pushes an artifact as alice;
- an API token made through /api/v1 with scope repo:read pulls (as ``$token``) and is
  DENIED a push; a registry token from /v2/auth lists tags;
- at the end, no secret used in the session (passwords, robot and API tokens, a registry
  token) appears anywhere in the server's output.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import bootstrap, ensure_admin
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.identity import (
    AccountName,
    Principal,
    RepositoryRole,
    RobotShortName,
    Visibility,
)
from cargohold.domain.values import Actor, ActorKind, RepositoryName
from tests.fixtures.images import LAYER_GZIP, OCILayout, gzip_layer, layout_blobs, sha256
from tests.fixtures.server import Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.tools import (
    ToolError,
    client_env,
    crane_command,
    oras_command,
    registry_host,
    run_tool,
    skopeo_command,
)
from tests.fixtures.v2client import V2Client

CIPHER_KEY = base64.b64encode(b"auth-e2e-cipher-key-32-bytes!!!!").decode()


@dataclass
class Site:
    server: Server
    host: str
    home: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """A client environment whose credential stores live in this test's home."""
        return client_env(self.home)

    def run(self, argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_tool(argv, env=self.env(), cwd=cwd)

    def fails(self, argv: list[str], cwd: Path | None = None) -> str:
        """Run ``argv`` expecting failure; its output, lower-cased."""
        with pytest.raises(ToolError) as caught:
            self.run(argv, cwd=cwd)
        return f"{caught.value.stdout}\n{caught.value.stderr}".lower()


def _prepare(data: Path, secrets: dict[str, str]) -> None:
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": data,
            "cipher_key": CIPHER_KEY,
            "admin_password": secrets["admin"],
        },
    )
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    try:
        system = Caller(Actor.system(), "e2e-setup")
        ensure_admin(c)
        for user in ("alice", "bob"):
            c.identity.create_user(AccountName(user), f"{user}@example.com", secrets[user], system)
        alice = Caller(Actor(ActorKind.USER, "alice"), "e2e-setup")
        acme = AccountName("acme")
        c.identity.create_organization(acme, AccountName("alice"), alice)
        secrets["robot"] = c.identity.create_robot(acme, RobotShortName("ci"), alice)
        c.identity.set_default_permission(
            acme, Principal.robot("acme", "ci"), RepositoryRole.WRITE, alice
        )
        c.registry.create_repository(RepositoryName("acme/web"), alice)
        c.registry.create_repository(RepositoryName("alice/public"), alice, Visibility.PUBLIC)
    finally:
        c.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("cargohold-auth")
    secrets = {
        "admin": "admin-" + base64.b32encode(os.urandom(10)).decode(),
        "alice": "alice-" + base64.b32encode(os.urandom(10)).decode(),
        "bob": "bob-" + base64.b32encode(os.urandom(10)).decode(),
    }
    _prepare(root / "data", secrets)
    env = {
        "CARGOHOLD_AUTH": "on",
        "CARGOHOLD_CIPHER_KEY": CIPHER_KEY,
        "CARGOHOLD_ADMIN_PASSWORD": secrets["admin"],
    }
    listen = f"127.0.0.1:{free_port()}"
    home = root / "home"
    home.mkdir()
    with serving("--data-dir", str(root / "data"), "--listen", listen, cwd=root, env=env) as s:
        yield Site(s, registry_host(s.url), home, secrets)


def image_layout(root: Path, name: str) -> tuple[OCILayout, str]:
    layout = OCILayout(root)
    layer, diff_id = gzip_layer({f"etc/{name}": os.urandom(32 * 1024)})
    manifest = layout.add_image([layout.add_blob(layer, LAYER_GZIP)], [diff_id])
    layout.tag(manifest, "v1")
    return layout, str(manifest["digest"])


def test_a_user_logs_in_pushes_and_pulls_byte_identical(site: Site, tmp_path: Path) -> None:
    layout, _ = image_layout(tmp_path / "src", "alice-app")
    # podman's flow: `login` stores the credentials, later commands use them.
    site.run(skopeo_command("login", "-u", "alice", "-p", site.secrets["alice"], site.host))
    site.run(
        skopeo_command(
            "copy",
            "--preserve-digests",
            f"oci:{layout.root}:v1",
            f"docker://{site.host}/alice/app:v1",
        )
    )
    site.run(
        skopeo_command(
            "copy",
            "--preserve-digests",
            f"docker://{site.host}/alice/app:v1",
            f"oci:{tmp_path / 'back'}:v1",
        )
    )
    pulled = layout_blobs(tmp_path / "back")
    assert pulled == {d: p.read_bytes() for d, p in layout.blobs.items()}
    site.run(skopeo_command("logout", site.host))


def test_others_are_denied_and_anonymous_callers_unauthorized(site: Site, tmp_path: Path) -> None:
    layout, _ = image_layout(tmp_path / "src", "alice-private")
    site.run(
        skopeo_command(
            "copy",
            "--dest-creds",
            f"alice:{site.secrets['alice']}",
            f"oci:{layout.root}:v1",
            f"docker://{site.host}/alice/private:v1",
        )
    )
    ref = f"docker://{site.host}/alice/private:v1"
    denied = site.fails(skopeo_command("inspect", "--creds", f"bob:{site.secrets['bob']}", ref))
    assert "denied" in denied
    anonymous = site.fails(skopeo_command("inspect", "--no-creds", ref))
    assert "unauthorized" in anonymous or "authentication required" in anonymous
    wrong = site.fails(skopeo_command("inspect", "--creds", "alice:not-her-password", ref))
    assert "unauthorized" in wrong or "invalid" in wrong
    pushed_by_bob = site.fails(
        skopeo_command(
            "copy",
            "--dest-creds",
            f"bob:{site.secrets['bob']}",
            f"oci:{layout.root}:v1",
            f"docker://{site.host}/alice/bobs:v1",
        )
    )
    # A HEAD has no body, so skopeo can only report the status there.
    assert "denied" in pushed_by_bob or "403 (forbidden)" in pushed_by_bob


def test_a_robot_copies_with_crane_and_cannot_create(site: Site, tmp_path: Path) -> None:
    layout, digest = image_layout(tmp_path / "src", "public")
    site.run(
        skopeo_command(
            "copy",
            "--preserve-digests",
            "--dest-creds",
            f"alice:{site.secrets['alice']}",
            f"oci:{layout.root}:v1",
            f"docker://{site.host}/alice/public:v1",
        )
    )
    site.run(
        crane_command("auth", "login", site.host, "-u", "acme+ci", "-p", site.secrets["robot"])
    )
    try:
        site.run(crane_command("copy", f"{site.host}/alice/public:v1", f"{site.host}/acme/web:v1"))
        digest_of_copy = site.run(crane_command("digest", f"{site.host}/acme/web:v1")).stdout
        assert digest_of_copy.strip() == digest
        refused = site.fails(
            crane_command("copy", f"{site.host}/alice/public:v1", f"{site.host}/acme/new:v1")
        )
        # A HEAD has no body, so crane can only report the status there.
        assert "denied" in refused or "403 forbidden" in refused
    finally:
        site.run(crane_command("auth", "logout", site.host))


def test_oras_pushes_as_a_user_and_pulls_public_anonymously(site: Site, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello from oras\n")
    private_ref = f"{site.host}/alice/artifacts:v1"
    public_ref = f"{site.host}/alice/public:note"
    push = ["push", "notes.txt:text/plain", "--artifact-type", "application/x.note"]
    refused = site.fails(oras_command(push[0], private_ref, *push[1:]), cwd=work)
    assert "unauthorized" in refused or "401" in refused
    alice = ["--username", "alice", "--password", site.secrets["alice"]]
    for ref in (private_ref, public_ref):
        site.run(oras_command(push[0], ref, *push[1:], *alice), cwd=work)
    # The private artifact needs alice's credentials; the public one none at all.
    refused = site.fails(oras_command("pull", private_ref, "-o", str(tmp_path / "no")))
    assert "unauthorized" in refused or "401" in refused
    for ref, extra, out in ((private_ref, alice, "mine"), (public_ref, [], "anyone")):
        site.run(oras_command("pull", ref, "-o", str(tmp_path / out), *extra))
        assert (tmp_path / out / "notes.txt").read_text() == "hello from oras\n"


def test_an_api_token_made_through_api_v1_is_capped_by_its_scopes(
    site: Site, tmp_path: Path
) -> None:
    client = V2Client(site.server.url)
    alice = "Basic " + base64.b64encode(f"alice:{site.secrets['alice']}".encode()).decode()
    r = client.request(
        "POST",
        "/api/v1/user/apptoken",
        body=json.dumps({"title": "e2e", "scopes": ["repo:read"]}).encode(),
        headers={"Authorization": alice, "Content-Type": "application/json"},
    )
    assert r.status == 201, r.body
    site.secrets["api token"] = token = r.json()["token"]["token_code"]
    layout, digest = image_layout(tmp_path / "src", "token-test")
    site.run(
        skopeo_command(
            "copy",
            "--dest-creds",
            f"alice:{site.secrets['alice']}",
            f"oci:{layout.root}:v1",
            f"docker://{site.host}/alice/tokens:v1",
        )
    )
    ref = f"docker://{site.host}/alice/tokens:v1"
    inspected = site.run(skopeo_command("inspect", "--raw", "--creds", f"$token:{token}", ref))
    assert sha256(inspected.stdout.encode()) == digest
    refused = site.fails(
        skopeo_command(
            "copy", "--dest-creds", f"$token:{token}", f"oci:{layout.root}:v1", f"{ref}-again"
        )
    )
    assert "denied" in refused or "403" in refused
    # The registry token itself is a secret too.
    r = client.request(
        "GET",
        "/v2/auth",
        params={"service": "cargohold", "scope": "repository:alice/tokens:pull"},
        headers={"Authorization": alice},
    )
    site.secrets["registry token"] = r.json()["token"]
    assert client.request(
        "GET",
        "/v2/alice/tokens/tags/list",
        headers={"Authorization": f"Bearer {r.json()['token']}"},
    ).json() == {"name": "alice/tokens", "tags": ["v1"]}


def test_no_secret_appears_in_the_server_output(site: Site) -> None:
    output = site.server.output()
    for name, secret in site.secrets.items():
        assert secret not in output, f"the {name} secret is in the server output"
    assert "Traceback" not in output
