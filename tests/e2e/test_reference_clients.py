"""The real clients (crane, skopeo, oras) against the reference registry.

A sanity check of the client helpers in ``tests.fixtures.tools`` before cargohold's /v2
exists: an image built here (no internet) is pushed with crane, copied between two
repositories with skopeo, pulled with oras and crane, and everything read back is
compared by digest and by bytes. The same calls then run against cargohold.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

from tests.fixtures.digests import sha256
from tests.fixtures.tools import (
    crane_command,
    oras_command,
    registry_host,
    run_crane,
    run_oras,
    run_skopeo,
    run_tool,
    skopeo_command,
)


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_crane_push_skopeo_copy_oras_and_crane_pull(
    reference_registry: str, tmp_path: Path
) -> None:
    host = registry_host(reference_registry)
    payload = os.urandom(64 * 1024)
    layer = layer_tar({"data/payload.bin": payload, "data/hello.txt": b"hello cargohold\n"})
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(layer)
    src, dst = f"{host}/e2e/clients-src:v1", f"{host}/e2e/clients-dst:v1"

    pushed = run_crane("append", "--oci-empty-base", "-f", str(layer_path), "-t", src)
    digest = pushed.stdout.strip().rsplit("@", 1)[-1]
    assert digest.startswith("sha256:"), pushed.stdout
    assert run_crane("digest", src).stdout.strip() == digest

    run_skopeo("copy", "--preserve-digests", f"docker://{src}", f"docker://{dst}")

    assert run_crane("digest", dst).stdout.strip() == digest
    assert run_oras("resolve", dst).stdout.strip() == digest
    assert "v1" in run_crane("ls", f"{host}/e2e/clients-dst").stdout.split()
    manifest_bytes = run_tool(oras_command("manifest", "fetch", dst), text=False).stdout
    assert sha256(manifest_bytes) == digest
    raw = run_tool(skopeo_command("inspect", "--raw", f"docker://{dst}"), text=False).stdout
    assert raw == manifest_bytes

    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    [layer_descriptor] = manifest["layers"]
    blob_ref = f"{host}/e2e/clients-dst@{layer_descriptor['digest']}"
    blob = run_tool(oras_command("blob", "fetch", "--output", "-", blob_ref), text=False).stdout
    assert sha256(blob) == layer_descriptor["digest"]
    assert len(blob) == layer_descriptor["size"]
    assert gzip.decompress(blob) == layer  # crane compressed exactly our tar
    assert run_tool(crane_command("blob", blob_ref), text=False).stdout == blob

    exported = run_tool(crane_command("export", dst, "-"), text=False).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        member = tar.extractfile("data/payload.bin")
        assert member is not None
        assert member.read() == payload


def test_oras_artifact_round_trip(reference_registry: str, tmp_path: Path) -> None:
    host = registry_host(reference_registry)
    ref = f"{host}/e2e/artifact:v1"
    push_dir, pull_dir = tmp_path / "push", tmp_path / "pull"
    push_dir.mkdir()
    content = os.urandom(10_000)
    (push_dir / "notes.bin").write_bytes(content)

    run_oras(
        "push",
        ref,
        "--artifact-type",
        "application/vnd.cargohold.test+type",
        "notes.bin:application/octet-stream",
        cwd=push_dir,
    )
    manifest = json.loads(run_crane("manifest", ref).stdout)
    assert manifest["artifactType"] == "application/vnd.cargohold.test+type"
    assert manifest["layers"][0]["digest"] == sha256(content)

    run_oras("pull", ref, "-o", str(pull_dir))
    assert (pull_dir / "notes.bin").read_bytes() == content
