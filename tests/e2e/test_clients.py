"""The real clients (skopeo, crane, oras) against a live ``cargohold serve``.

One server for the module, on a free port with a throwaway data dir. Every image is built
here as an OCI layout on disk (no internet), pushed and pulled through the clients, and
everything read back is compared with what was pushed, by digest and byte for byte:

- a multi-platform index (linux/amd64 + linux/arm64), skopeo ``copy --all`` both ways,
  read back with ``crane manifest [--platform]``;
- artifacts with a subject (``oras attach``), found through ``oras discover`` and the
  referrers API with ``artifactType`` filtering; a plain ``oras push`` artifact;
- a 1 GiB single-layer image (slow), pushed with skopeo, pulled with skopeo and
  ``crane blob``;
- ``crane copy`` between two repositories, proven (from its ``--verbose`` log) to mount
  every layer instead of uploading it; ``skopeo copy`` between repositories;
- finally ``cargohold replay verify`` over the server's data dir is clean.

Mirrors ``test_reference_clients.py``, which runs the same kind of calls against the
reference registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.images import (
    LAYER_GZIP,
    LAYER_TAR,
    OCI_INDEX,
    OCI_MANIFEST,
    OCILayout,
    file_sha256,
    gzip_layer,
    layout_blobs,
    layout_tagged,
    sha256,
    write_random_layer,
)
from tests.fixtures.server import Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.tools import (
    ToolError,
    crane_command,
    oras_command,
    registry_host,
    run_crane,
    run_oras,
    run_skopeo,
    run_tool,
)
from tests.fixtures.v2client import V2Client

SBOM = "application/vnd.example.sbom+json"
SIGNATURE = "application/vnd.example.signature+json"
ARCHES = ("amd64", "arm64")
BIG_PAYLOAD = 1 << 30  # 1 GiB of pseudo-random bytes in the big layer's single file
BIG_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Registry:
    server: Server
    data_dir: Path
    host: str  # 127.0.0.1:PORT, the form image references use

    @property
    def client(self) -> V2Client:
        return V2Client(self.server.url)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("cargohold-clients")
    data = root / "data"
    listen = f"127.0.0.1:{free_port()}"
    with serving("--data-dir", str(data), "--listen", listen, cwd=root) as server:
        yield Registry(server, data, registry_host(server.url))
    # NOTE: the 1 GiB test leaves its blob in the data dir; pytest keeps tmp dirs around.
    shutil.rmtree(data, ignore_errors=True)


# -- helpers ------------------------------------------------------------------------------


def crane_bytes(*args: str) -> bytes:
    """crane's stdout as bytes (``crane manifest`` prints the manifest exactly as served)."""
    return run_tool(crane_command(*args), text=False).stdout


def small_image(layout: OCILayout, name: str, *, architecture: str = "amd64") -> dict[str, object]:
    """One gzip layer of fresh random bytes plus a text file; the manifest descriptor."""
    layer, diff_id = gzip_layer(
        {
            f"etc/{name}.txt": f"{name} for linux/{architecture}\n".encode(),
            "data/payload.bin": os.urandom(96 * 1024),
        }
    )
    descriptor = layout.add_blob(layer, LAYER_GZIP)
    return layout.add_image([descriptor], [diff_id], architecture=architecture)


def two_layer_image(layout: OCILayout) -> dict[str, object]:
    layers, diff_ids = [], []
    for i in range(2):
        layer, diff_id = gzip_layer({f"layer{i}/payload.bin": os.urandom(200 * 1024)})
        layers.append(layout.add_blob(layer, LAYER_GZIP))
        diff_ids.append(diff_id)
    return layout.add_image(layers, diff_ids)


def original_blobs(layout: OCILayout) -> dict[str, bytes]:
    return {digest: path.read_bytes() for digest, path in layout.blobs.items()}


def assert_layout_equal(pulled: Path, layout: OCILayout, tag: str, digest: object) -> None:
    """The layout skopeo pulled into ``pulled`` holds exactly ``layout``'s blobs, byte for
    byte, and names ``digest`` as ``tag``."""
    blobs = layout_blobs(pulled)
    for name, data in blobs.items():
        assert sha256(data) == name  # the file is what its name says
    assert blobs == original_blobs(layout)
    assert layout_tagged(pulled, tag)["digest"] == digest


def push_layout(layout: OCILayout, tag: str, ref: str, *, timeout: float = 300.0) -> None:
    """skopeo copy the layout to ``docker://ref``; ``--preserve-digests`` forbids skopeo to
    recompress, so the registry must end up with exactly the layout's bytes."""
    run_skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        f"oci:{layout.root}:{tag}",
        f"docker://{ref}",
        timeout=timeout,
    )


def pull_layout(ref: str, dest: Path, tag: str, *, timeout: float = 300.0) -> None:
    run_skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        f"docker://{ref}",
        f"oci:{dest}:{tag}",
        timeout=timeout,
    )


# -- 1. a multi-platform index ------------------------------------------------------------


def test_multi_platform_index_pushed_and_pulled_byte_identical(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "src")
    platforms = {
        arch: small_image(layout, "multi", architecture=arch) for arch in ("amd64", "arm64")
    }
    index = layout.add_index(platforms.values())
    layout.tag(index, "v1")
    ref = f"{registry.host}/e2e/multi:v1"

    push_layout(layout, "v1", ref)

    assert run_crane("digest", ref).stdout.strip() == index["digest"]
    served_index = crane_bytes("manifest", ref)
    assert served_index == layout.blobs[index["digest"]].read_bytes()
    assert json.loads(served_index)["mediaType"] == OCI_INDEX
    for arch, descriptor in platforms.items():
        served = crane_bytes("manifest", "--platform", f"linux/{arch}", ref)
        assert sha256(served) == descriptor["digest"]
        assert served == layout.blobs[str(descriptor["digest"])].read_bytes()
        config = json.loads(crane_bytes("config", "--platform", f"linux/{arch}", ref))
        assert (config["os"], config["architecture"]) == ("linux", arch)
    # the two platforms really are different images
    assert platforms["amd64"]["digest"] != platforms["arm64"]["digest"]

    pulled = tmp_path / "pulled"
    pull_layout(ref, pulled, "v1")
    assert_layout_equal(pulled, layout, "v1", index["digest"])


# -- 2. artifacts, the subject field and the referrers API --------------------------------


def test_artifact_with_subject_found_through_the_referrers_api(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "src")
    image = small_image(layout, "art")
    layout.tag(image, "v1")
    ref = f"{registry.host}/e2e/art:v1"
    push_layout(layout, "v1", ref)
    subject = str(image["digest"])
    assert run_crane("digest", ref).stdout.strip() == subject

    work = tmp_path / "work"
    work.mkdir()
    sbom = json.dumps({"packages": [{"name": "cargohold", "nonce": os.urandom(8).hex()}]})
    (work / "sbom.json").write_text(sbom)
    (work / "sig.json").write_text(json.dumps({"signature": os.urandom(32).hex()}))

    def attach(artifact_type: str, filename: str) -> dict[str, object]:
        out = run_oras(
            "attach", "--artifact-type", artifact_type, ref, filename, "--format", "json", cwd=work
        )
        result: dict[str, object] = json.loads(out.stdout)
        return result

    sbom_result = attach(SBOM, "sbom.json")
    sig_result = attach(SIGNATURE, "sig.json")
    sbom_digest, sig_digest = str(sbom_result["digest"]), str(sig_result["digest"])
    assert sbom_digest != sig_digest

    # what oras pushed: an artifact manifest whose subject is the image
    sbom_manifest_bytes = crane_bytes("manifest", f"{registry.host}/e2e/art@{sbom_digest}")
    assert sha256(sbom_manifest_bytes) == sbom_digest
    sbom_manifest = json.loads(sbom_manifest_bytes)
    assert sbom_manifest["artifactType"] == SBOM
    assert sbom_manifest["subject"]["digest"] == subject
    [sbom_layer] = sbom_manifest["layers"]
    assert sbom_layer["digest"] == sha256(sbom.encode())

    # oras discover finds both referrers, each with its artifact type
    discovered = json.loads(run_oras("discover", ref, "--format", "json").stdout)
    found = {m["digest"]: m["artifactType"] for m in discovered["referrers"]}
    assert found == {sbom_digest: SBOM, sig_digest: SIGNATURE}
    filtered = json.loads(
        run_oras("discover", ref, "--artifact-type", SBOM, "--format", "json").stdout
    )
    assert [m["digest"] for m in filtered["referrers"]] == [sbom_digest]

    # the referrers API itself, filtered and unfiltered
    path = f"/v2/e2e/art/referrers/{subject}"
    r = registry.client.request("GET", path, params={"artifactType": SBOM})
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith(OCI_INDEX)
    assert r.headers.get("oci-filters-applied") == "artifactType"
    body = r.json()
    assert body["mediaType"] == OCI_INDEX
    assert [(m["digest"], m["artifactType"], m["size"]) for m in body["manifests"]] == [
        (sbom_digest, SBOM, len(sbom_manifest_bytes))
    ]
    r = registry.client.request("GET", path)
    assert r.status == 200, r.body
    assert "oci-filters-applied" not in r.headers
    assert {m["digest"] for m in r.json()["manifests"]} == {sbom_digest, sig_digest}

    # pull the referrer and get the very same file back
    pulled = tmp_path / "pulled"
    run_oras("pull", f"{registry.host}/e2e/art@{sbom_digest}", "-o", str(pulled))
    assert (pulled / "sbom.json").read_text() == sbom


def test_plain_artifact_push_and_pull(registry: Registry, tmp_path: Path) -> None:
    work, pulled = tmp_path / "work", tmp_path / "pulled"
    work.mkdir()
    content = os.urandom(300_000)
    (work / "notes.bin").write_bytes(content)
    ref = f"{registry.host}/e2e/plain:v1"
    artifact_type = "application/vnd.cargohold.test+type"

    pushed = json.loads(
        run_oras(
            "push",
            ref,
            "--artifact-type",
            artifact_type,
            "notes.bin:application/octet-stream",
            "--format",
            "json",
            cwd=work,
        ).stdout
    )
    manifest_bytes = crane_bytes("manifest", ref)
    assert sha256(manifest_bytes) == pushed["digest"]
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == artifact_type
    assert [(x["digest"], x["size"]) for x in manifest["layers"]] == [
        (sha256(content), len(content))
    ]
    assert run_oras("resolve", ref).stdout.strip() == pushed["digest"]

    run_oras("pull", ref, "-o", str(pulled))
    assert (pulled / "notes.bin").read_bytes() == content


# -- 3. a 1 GiB single-layer image --------------------------------------------------------


def crane_blob_to_file(ref: str, dest: Path, timeout: float) -> None:
    """``crane blob REF > dest``, streamed to disk (never through this process's memory)."""
    argv = crane_command("blob", ref)
    with dest.open("wb") as sink:
        try:
            result = subprocess.run(
                argv, stdout=sink, stderr=subprocess.PIPE, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise ToolError(argv, f"timed out after {timeout:.0f}s", "", str(e.stderr)) from e
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise ToolError(argv, f"exit status {result.returncode}", "", stderr)


@pytest.mark.slow
@pytest.mark.timeout(BIG_TIMEOUT)
def test_one_gib_single_layer_image(registry: Registry, tmp_path: Path) -> None:
    try:
        layout = OCILayout(tmp_path / "src")
        layer = write_random_layer(tmp_path / "layer.tar", BIG_PAYLOAD, seed=20240601)
        assert layer.size > BIG_PAYLOAD
        descriptor = layout.add_blob_file(layer, LAYER_TAR)
        # an uncompressed layer's diff_id is its own digest
        image = layout.add_image([descriptor], [layer.digest])
        layout.tag(image, "v1")
        ref = f"{registry.host}/e2e/big:v1"

        push_layout(layout, "v1", ref, timeout=BIG_TIMEOUT)

        assert run_crane("digest", ref).stdout.strip() == image["digest"]
        assert crane_bytes("manifest", ref) == layout.blobs[str(image["digest"])].read_bytes()

        pulled = tmp_path / "pulled"
        pull_layout(ref, pulled, "v1", timeout=BIG_TIMEOUT)
        assert layout_tagged(pulled, "v1")["digest"] == image["digest"]
        pulled_layer = pulled / "blobs" / "sha256" / layer.digest.split(":", 1)[1]
        assert pulled_layer.stat().st_size == layer.size
        assert file_sha256(pulled_layer) == layer.digest
        pulled_layer.unlink()  # free the disk before the next gigabyte
        for name, path in layout.blobs.items():
            if name != layer.digest:
                pulled_path = pulled / "blobs" / "sha256" / name.split(":", 1)[1]
                assert pulled_path.read_bytes() == path.read_bytes()

        streamed = tmp_path / "crane-blob.bin"
        crane_blob_to_file(f"{registry.host}/e2e/big@{layer.digest}", streamed, BIG_TIMEOUT)
        assert streamed.stat().st_size == layer.size
        assert file_sha256(streamed) == layer.digest
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


# -- 4. copying between repositories with a cross-repository mount ------------------------

# go-containerregistry's --verbose transport logs "--> METHOD URL" and "<-- STATUS URL".
_REQUEST = re.compile(r"--> (GET|HEAD|POST|PUT|PATCH|DELETE) (\S+)")
_RESPONSE = re.compile(r"<-- (\d{3}) (\S+)")


def crane_requests(log: str) -> list[tuple[str, str, int | None]]:
    """``(method, url, status)`` for every request in a ``crane --verbose`` log; status
    ``None`` when the log shows no answer to it."""
    requests: list[tuple[str, str]] = []
    statuses: dict[str, list[int]] = {}
    for line in log.splitlines():
        if m := _REQUEST.search(line):
            requests.append((m.group(1), m.group(2)))
        elif m := _RESPONSE.search(line):
            statuses.setdefault(m.group(2), []).append(int(m.group(1)))
    result: list[tuple[str, str, int | None]] = []
    for method, url in requests:
        answers = statuses.get(url, [])
        result.append((method, url, answers.pop(0) if answers else None))
    return result


def test_crane_copy_mounts_every_layer_across_repositories(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "src")
    image = two_layer_image(layout)
    layout.tag(image, "v1")
    src, dst = f"{registry.host}/e2e/src:v1", f"{registry.host}/e2e/dst:v1"
    push_layout(layout, "v1", src)
    manifest = json.loads(layout.blobs[str(image["digest"])].read_bytes())
    layer_digests = {layer["digest"] for layer in manifest["layers"]}
    assert len(layer_digests) == 2

    copied = run_crane("--verbose", "copy", src, dst)
    requests = crane_requests(copied.stderr)
    log_tail = copied.stderr[-4000:]
    assert ("PUT", f"http://{registry.host}/v2/e2e/dst/manifests/v1", 201) in requests, log_tail

    mounted = set()
    for method, url, status in requests:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if method == "POST" and parts.path == "/v2/e2e/dst/blobs/uploads/" and "mount" in query:
            assert query["from"] == ["e2e/src"], url
            assert status == 201, (url, status, log_tail)
            mounted.update(query["mount"])
    # crane mounts the config too, as it does against the reference registry
    assert mounted == layer_digests | {manifest["config"]["digest"]}, log_tail
    # and sent no blob bytes: no PATCH, no upload completed with PUT
    uploads = [
        (method, url)
        for method, url, _ in requests
        if method == "PATCH" or (method == "PUT" and "/blobs/" in url)
    ]
    assert uploads == [], log_tail

    assert run_crane("digest", dst).stdout.strip() == image["digest"]
    pulled = tmp_path / "pulled"
    pull_layout(dst, pulled, "v1")
    assert_layout_equal(pulled, layout, "v1", image["digest"])


def test_skopeo_copy_between_repositories(registry: Registry, tmp_path: Path) -> None:
    layout = OCILayout(tmp_path / "src")
    image = two_layer_image(layout)
    layout.tag(image, "v1")
    src, dst = f"{registry.host}/e2e/skopeo-src:v1", f"{registry.host}/e2e/skopeo-dst:v1"
    push_layout(layout, "v1", src)

    run_skopeo("copy", "--preserve-digests", f"docker://{src}", f"docker://{dst}")

    assert run_crane("digest", dst).stdout.strip() == image["digest"]
    pulled = tmp_path / "pulled"
    pull_layout(dst, pulled, "v1")
    assert_layout_equal(pulled, layout, "v1", image["digest"])


# -- 5. clients that probe HTTPS first ---------------------------------------------------


def test_a_tls_probe_is_refused_at_once(registry: Registry) -> None:
    """containers/image (skopeo, podman, buildah) with TLS verification off pings
    ``https://HOST/v2/`` first and falls back to plain HTTP only when that fails. The
    reference registry (Go net/http) fails the TLS handshake at once; a server that
    silently waits for more bytes makes every skopeo command wait out Go's 10 s TLS
    handshake timeout."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = registry.host.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            context.wrap_socket(sock, server_hostname=host).close()
        except TimeoutError:
            pytest.fail("the server never answered a TLS ClientHello (waited 5 s)")
        except (ssl.SSLError, OSError):
            pass  # refused, as a plain-HTTP server should: the client falls back to HTTP
        else:
            pytest.fail("a TLS handshake succeeded against a plain-HTTP server")
    assert time.monotonic() - started < 2

    started = time.monotonic()
    with pytest.raises(ToolError, match="name unknown"):
        run_skopeo("inspect", "--raw", f"docker://{registry.host}/e2e/never-pushed:v1")
    took = time.monotonic() - started
    assert took < 5, f"skopeo inspect took {took:.1f}s"


# -- 6. the log replays to the same views -------------------------------------------------


def test_replay_verify_is_clean_after_the_clients(registry: Registry, tmp_path: Path) -> None:
    # Runs last in this module; a little more history of its own (a tag move and a
    # manifest deletion) so it never verifies an empty log when run alone.
    layout = OCILayout(tmp_path / "src")
    first, second = small_image(layout, "verify-1"), small_image(layout, "verify-2")
    layout.tag(first, "v1")
    layout.tag(second, "v2")
    ref = f"{registry.host}/e2e/verify"
    push_layout(layout, "v1", f"{ref}:v1")
    push_layout(layout, "v2", f"{ref}:v1")  # moves the tag
    assert run_crane("digest", f"{ref}:v1").stdout.strip() == second["digest"]
    run_crane("delete", f"{ref}@{first['digest']}")
    with pytest.raises(ToolError):
        run_crane("manifest", f"{ref}@{first['digest']}")
    assert "e2e/verify" in run_tool(oras_command("repo", "ls", registry.host)).stdout.split()

    data_dir = str(registry.data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli", "replay", "verify", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert registry.server.proc.poll() is None, registry.server.output()[-4000:]
