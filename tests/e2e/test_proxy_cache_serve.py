"""A pull-through cache in a real ``cargohold serve``, in front of a second cargohold with
access control on (the upstream), with the real clients; and a mirror of that upstream.

- skopeo and crane pull ``cache/<upstream path>`` through the cache, byte-identical to
  what the upstream holds;
- the first client of a blob gets its first bytes while the upstream is still sending
  (the cache streams while it stores), through a ``FaultProxy`` that throttles it;
- an upstream that breaks off mid-blob costs that client its body and leaves nothing
  half-written: the next pull fetches the blob again, whole;
- a 1 GiB layer is mirrored (``cargohold mirror run-once``) and pulled through the cache
  with the memory of each bounded; the peaks are printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.content import blocks
from bench.servers import RssSampler, tree_rss
from cargohold import chores
from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap, ensure_admin
from cargohold.commands.mirrors import MirrorInput
from cargohold.commands.proxy_caches import ProxyCacheInput
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.identity import AccountName, RobotShortName, TeamName, TeamRole
from cargohold.domain.values import Actor, Digest, RepositoryName
from tests.fixtures.fault_proxy import FaultProxy, running_proxy
from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.tools import client_env, crane_command, registry_host, run_tool, skopeo_command
from tests.fixtures.upstreams import Upstream

SYSTEM = Caller(Actor.system(), "e2e-setup")


def _secret(prefix: str) -> str:
    return prefix + "-" + base64.b32encode(os.urandom(10)).decode()


@dataclass
class Sites:
    upstream: Upstream  # the second cargohold, pushed to as its admin
    proxy: FaultProxy  # in front of it
    cache_url: str
    cache_host: str
    bob: str  # bob's password at the cache
    home: Path
    cache_pid: int

    def env(self) -> dict[str, str]:
        """A client environment whose credential stores live in this test's home."""
        return client_env(self.home)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.cache_url, auth=("bob", self.bob), timeout=60.0)


def _prepare_cache(data: Path, admin: str, bob: str, upstream: str, password: str) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": data, "admin_password": admin})
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    try:
        ensure_admin(c)
        c.identity.create_user(AccountName("bob"), "bob@example.com", bob, SYSTEM)
        org = AccountName("cache")
        c.identity.create_organization(org, AccountName("admin"), SYSTEM)
        c.identity.upsert_team(org, TeamName("pullers"), TeamRole.MEMBER, SYSTEM)
        c.identity.add_team_member(org, TeamName("pullers"), AccountName("bob"), SYSTEM)
        c.proxy_caches.configure(
            "cache",
            ProxyCacheInput(upstream, "admin", password, expiration_s=3600, insecure=True),
            SYSTEM,
        )
    finally:
        c.close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    root = tmp_path_factory.mktemp("proxy-cache-e2e")
    upstream_admin, cache_admin, bob = _secret("up"), _secret("admin"), _secret("bob")
    up_port = free_port()
    up_env = {"CARGOHOLD_AUTH": "on", "CARGOHOLD_ADMIN_PASSWORD": upstream_admin}
    (root / "up").mkdir()
    with (
        serving(
            "--data-dir",
            str(root / "up" / "data"),
            "--listen",
            f"127.0.0.1:{up_port}",
            cwd=root / "up",
            env=up_env,
        ),
        running_proxy(f"http://127.0.0.1:{up_port}") as proxy,
    ):
        _prepare_cache(root / "cache-data", cache_admin, bob, proxy.registry, upstream_admin)
        env = {"CARGOHOLD_AUTH": "on", "CARGOHOLD_ADMIN_PASSWORD": cache_admin}
        with serving(
            "--data-dir",
            str(root / "cache-data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            cwd=root,
            env=env,
        ) as cache:
            home = root / "home"
            home.mkdir()
            upstream = Upstream("cargohold", "", root / "up", up_port, "admin", upstream_admin)
            yield Sites(
                upstream, proxy, cache.url, registry_host(cache.url), bob, home, cache.proc.pid
            )


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upstream_blob(sites: Sites, repo: str, digest: str) -> bytes:
    with sites.upstream.client(repo) as http:
        r = http.get(f"/v2/{repo}/blobs/{digest}")
        r.raise_for_status()
        return r.content


def test_skopeo_and_crane_pull_through_the_cache_byte_identical(
    sites: Sites, tmp_path: Path
) -> None:
    pushed = sites.upstream.push_image("admin/app", "v1", layers=2, layer_size=512 * 1024)
    ref = f"{sites.cache_host}/cache/admin/app:v1"
    out = tmp_path / "dir"
    run_tool(
        skopeo_command("copy", "--src-creds", f"bob:{sites.bob}", f"docker://{ref}", f"dir:{out}"),
        env=sites.env(),
    )
    assert (out / "manifest.json").read_bytes() == pushed["manifest"]
    for digest in pushed["blobs"]:
        data = (out / digest.split(":", 1)[1]).read_bytes()
        assert data == _upstream_blob(sites, "admin/app", digest)
    run_tool(
        crane_command("auth", "login", sites.cache_host, "-u", "bob", "-p", sites.bob),
        env=sites.env(),
    )
    manifest = run_tool(crane_command("manifest", ref), env=sites.env(), text=False).stdout
    assert manifest == pushed["manifest"]
    layer = pushed["blobs"][-1]
    blob = run_tool(
        crane_command("blob", f"{sites.cache_host}/cache/admin/app@{layer}"),
        env=sites.env(),
        text=False,
    ).stdout
    assert _sha256(blob) == layer


def test_the_first_client_streams_while_the_blob_lands(sites: Sites) -> None:
    pushed = sites.upstream.push_image("admin/big", "v1", layer_size=6 * 1024 * 1024)
    layer = pushed["blobs"][-1]
    with sites.http() as http:
        assert http.get("/v2/cache/admin/big/manifests/v1").status_code == 200
        sites.proxy.bytes_per_second = 2 * 1024 * 1024  # about three seconds upstream
        try:
            hasher = hashlib.sha256()
            first: float | None = None
            with http.stream("GET", f"/v2/cache/admin/big/blobs/{layer}") as r:
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    if first is None:
                        first = time.monotonic()
                    hasher.update(chunk)
        finally:
            sites.proxy.bytes_per_second = None
    assert "sha256:" + hasher.hexdigest() == layer
    assert first is not None
    done = sites.proxy.finished[layer]
    assert done - first > 1.0, "the client waited for the whole blob to land"


def test_an_upstream_that_breaks_off_mid_blob_leaves_nothing_half_written(
    sites: Sites,
) -> None:
    pushed = sites.upstream.push_image("admin/cut", "v1", layer_size=4 * 1024 * 1024)
    layer = pushed["blobs"][-1]
    with sites.http() as http:
        assert http.get("/v2/cache/admin/cut/manifests/v1").status_code == 200
        sites.proxy.cut_after = 1024 * 1024
        try:
            # The body breaks off: the client sees a short read, never wrong bytes.
            with (
                pytest.raises(httpx.HTTPError),
                http.stream("GET", f"/v2/cache/admin/cut/blobs/{layer}") as r,
            ):
                assert r.status_code == 200, r.read()
                for _ in r.iter_bytes():
                    pass
        finally:
            sites.proxy.cut_after = None
        r = http.get(f"/v2/cache/admin/cut/blobs/{layer}")
        assert r.status_code == 200
        assert _sha256(r.content) == layer
    assert sites.proxy.blob_gets(layer) == 2


def _mirror_of(
    sites: Sites, data: Path, path: str, name: RepositoryName, globs: tuple[str, ...]
) -> Container:
    """A registry on ``data`` with ``name`` mirroring the upstream's ``path`` (due now),
    open for the caller to sync and close."""
    settings = load_settings(environ={}, overrides={"data_dir": data})
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    try:
        ensure_admin(c)
        org = AccountName(name.namespace)
        c.identity.create_organization(org, AccountName("admin"), SYSTEM)
        c.identity.create_robot(org, RobotShortName("mirror"), SYSTEM)
        c.registry.create_repository(name, SYSTEM)
        c.mirrors.configure(
            name,
            MirrorInput(
                external_reference=f"{sites.upstream.registry}/{path}",
                sync_interval_s=3600,
                sync_start_ms=0,
                robot=f"{org}+mirror",
                tag_globs=globs,
                username="admin",
                password=sites.upstream.password,
                verify_tls=False,
            ),
            SYSTEM,
        )
    except BaseException:
        c.close()
        raise
    return c


def test_a_mirror_syncs_from_a_cargohold_with_access_control_on(
    sites: Sites, tmp_path: Path
) -> None:
    pushed = sites.upstream.push_image("admin/mirrored", "v1", layers=2)
    sites.upstream.push_image("admin/mirrored", "other")
    name = RepositoryName("acme/mirrored")
    c = _mirror_of(sites, tmp_path / "data", "admin/mirrored", name, ("v*",))
    try:
        assert chores.sync_due_mirrors(c.mirror_queries, c.mirror_sync, c.queries.now_ms()) == 1
        repo = c.registry.current(name)
        assert repo is not None
        assert {str(t): str(d) for t, d in repo.tags.items()} == {"v1": pushed["digest"]}
        for digest in pushed["blobs"]:
            assert b"".join(c.blobs.read(Digest.parse(digest))) == _upstream_blob(
                sites, "admin/mirrored", digest
            )
    finally:
        c.close()
    # skopeo and crane pull the mirrored image byte-identical.
    listen = f"127.0.0.1:{free_port()}"
    with serving("--data-dir", str(tmp_path / "data"), "--listen", listen, cwd=tmp_path) as s:
        ref = f"{registry_host(s.url)}/acme/mirrored:v1"
        out = tmp_path / "dir"
        run_tool(skopeo_command("copy", f"docker://{ref}", f"dir:{out}"), env=sites.env())
        assert (out / "manifest.json").read_bytes() == pushed["manifest"]
        for digest in pushed["blobs"]:
            data = (out / digest.split(":", 1)[1]).read_bytes()
            assert data == _upstream_blob(sites, "admin/mirrored", digest)
        manifest = run_tool(crane_command("manifest", ref), env=sites.env(), text=False).stdout
        assert manifest == pushed["manifest"]


GIB = 1024 * 1024 * 1024


def _push_huge(sites: Sites, repo: str, size: int) -> tuple[str, str]:
    """Push one image whose layer is ``size`` deterministic bytes, streamed (never whole
    in memory); returns the layer's and the manifest's digests."""
    hasher = hashlib.sha256()
    for block in blocks(size, 11):
        hasher.update(block)
    layer = "sha256:" + hasher.hexdigest()
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    with sites.upstream.client(repo, "pull,push") as http:
        http.timeout = httpx.Timeout(600.0)
        uploads = ((layer, size, blocks(size, 11)), (_sha256(config), len(config), iter([config])))
        for digest, length, content in uploads:
            start = http.post(f"/v2/{repo}/blobs/uploads/")
            assert start.status_code == 202, start.text
            done = http.put(
                start.headers["Location"],
                params={"digest": digest},
                content=content,
                headers={"Content-Length": str(length)},
            )
            assert done.status_code == 201, done.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _sha256(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer,
                        "size": size,
                    }
                ],
            }
        ).encode()
        r = http.put(
            f"/v2/{repo}/manifests/v1",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201, r.text
    return layer, _sha256(manifest)


@pytest.mark.slow
def test_a_1_gib_layer_is_mirrored_and_cached_in_bounded_memory(
    sites: Sites, tmp_path: Path
) -> None:
    layer, manifest = _push_huge(sites, "admin/huge", GIB)
    # The mirror: `cargohold mirror run-once` in a process of its own, its RSS sampled.
    data = tmp_path / "data"
    _mirror_of(sites, data, "admin/huge", RepositoryName("acme/huge"), ("v1",)).close()
    argv = [sys.executable, "-m", "cargohold.cli", "mirror", "run-once", "--data-dir", str(data)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        sampler = RssSampler(p.pid, interval=0.05)
        with sampler.running():
            out, err = p.communicate(timeout=600)
    assert p.returncode == 0 and b"1 mirror sync ran" in out, out + err
    mirror_peak = sampler.peak / 2**20
    c = bootstrap(
        load_settings(environ={}, overrides={"data_dir": data}),
        hasher=Argon2PasswordHasher.cheap(),
    )
    try:
        repo = c.registry.current(RepositoryName("acme/huge"))
        assert repo is not None and str(repo.tags["v1"]) == manifest
        assert c.blobs.stat(Digest.parse(layer)) == GIB
    finally:
        c.close()
    # The cache: a first pull streams the layer through while it lands.
    before = tree_rss(sites.cache_pid) / 2**20
    cache_sampler = RssSampler(sites.cache_pid, interval=0.05)
    hasher = hashlib.sha256()
    with sites.http() as http, cache_sampler.running():
        http.timeout = httpx.Timeout(600.0)
        assert http.get("/v2/cache/admin/huge/manifests/v1").status_code == 200
        with http.stream("GET", f"/v2/cache/admin/huge/blobs/{layer}") as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes(1024 * 1024):
                hasher.update(chunk)
    assert "sha256:" + hasher.hexdigest() == layer
    growth = cache_sampler.peak / 2**20 - before
    print(
        f"\n1 GiB layer: mirror run-once peak RSS {mirror_peak:.0f} MiB; "
        f"cache server RSS {before:.0f} MiB before, growth {growth:.0f} MiB during the pull"
    )
    assert mirror_peak < 300, f"mirror run-once peaked at {mirror_peak:.0f} MiB"
    assert growth < 150, f"the cache server grew by {growth:.0f} MiB"
