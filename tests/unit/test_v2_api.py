"""The /v2 surface through falcon's TestClient, on the embedded default."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from cargohold.bootstrap import Container, bootstrap
from cargohold.config import load_settings
from cargohold.http.app import create_app
from tests.fixtures.digests import sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = bootstrap(
        load_settings(environ={}, overrides={"data_dir": tmp_path / "data", "auth": False})
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(container))


def code(result: falcon.testing.Result) -> str:
    return str(result.json["errors"][0]["code"])


def push_blob(client: falcon.testing.TestClient, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.simulate_post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    r = client.simulate_put(r.headers["location"], params={"digest": digest}, body=data)
    assert r.status_code == 201, r.text
    return digest


def manifest_for(
    client: falcon.testing.TestClient, name: str, seed: str = "x", **extra: Any
) -> bytes:
    config = json.dumps({"seed": seed}).encode()
    layer = f"layer {seed}".encode()
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(client, name, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push_blob(client, name, layer),
                "size": len(layer),
            }
        ],
        **extra,
    }
    return json.dumps(m).encode()


def put_manifest(
    client: falcon.testing.TestClient, name: str, ref: str, body: bytes
) -> falcon.testing.Result:
    return client.simulate_put(
        f"/v2/{name}/manifests/{ref}", body=body, headers={"Content-Type": OCI_MANIFEST}
    )


def test_base(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_monolithic_chunked_and_streamed_uploads(client: falcon.testing.TestClient) -> None:
    data = bytes(range(256)) * 40
    # chunked, with Content-Range
    r = client.simulate_post("/v2/a/b/blobs/uploads/")
    loc = r.headers["location"]
    assert r.headers["range"] == "0-0"
    r = client.simulate_patch(
        loc,
        body=data[:1000],
        headers={"Content-Range": "0-999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202 and r.headers["range"] == "0-999"
    # out of order
    r = client.simulate_patch(loc, body=data[2000:3000], headers={"Content-Range": "2000-2999"})
    assert r.status_code == 416 and code(r) == "BLOB_UPLOAD_INVALID"
    assert r.headers["range"] == "0-999"
    # streamed (no Content-Range)
    r = client.simulate_patch(loc, body=data[1000:5000])
    assert r.status_code == 202 and r.headers["range"] == "0-4999"
    r = client.simulate_get(loc)
    assert r.status_code == 204 and r.headers["range"] == "0-4999"
    r = client.simulate_put(loc, params={"digest": sha256(data)}, body=data[5000:])
    assert r.status_code == 201
    assert r.headers["docker-content-digest"] == sha256(data)
    r = client.simulate_get(r.headers["location"])
    assert r.status_code == 200 and r.content == data
    # single POST with digest
    other = b"single request"
    r = client.simulate_post("/v2/a/b/blobs/uploads/", params={"digest": sha256(other)}, body=other)
    assert r.status_code == 201
    assert client.simulate_get(f"/v2/a/b/blobs/{sha256(other)}").content == other


def test_digest_mismatch_and_unknown_upload(client: falcon.testing.TestClient) -> None:
    r = client.simulate_post("/v2/a/b/blobs/uploads/")
    loc = r.headers["location"]
    r = client.simulate_put(loc, params={"digest": sha256(b"other")}, body=b"content")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = client.simulate_put(loc, params={"digest": "sha256:nothex"}, body=b"content")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = client.simulate_delete(loc)
    assert r.status_code == 204
    r = client.simulate_get(loc)
    assert r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN"
    # an upload id belongs to its repository
    loc2 = client.simulate_post("/v2/a/b/blobs/uploads/").headers["location"]
    r = client.simulate_get(loc2.replace("/a/b/", "/c/d/"))
    assert r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_blob_reads_heads_and_ranges(client: falcon.testing.TestClient) -> None:
    data = b"0123456789" * 10
    digest = push_blob(client, "a/b", data)
    r = client.simulate_head(f"/v2/a/b/blobs/{digest}")
    assert r.status_code == 200 and r.headers["content-length"] == "100" and r.content == b""
    r = client.simulate_get(f"/v2/a/b/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == "bytes 10-19/100"
    r = client.simulate_get(f"/v2/a/b/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = client.simulate_get(f"/v2/a/b/blobs/{digest}", headers={"Range": "bytes=100-"})
    assert r.status_code == 416
    r = client.simulate_get(f"/v2/a/b/blobs/{sha256(b'none')}")
    assert r.status_code == 404 and code(r) == "BLOB_UNKNOWN"
    r = client.simulate_get(f"/v2/no/such/blobs/{digest}")
    assert r.status_code == 404 and code(r) == "NAME_UNKNOWN"
    r = client.simulate_delete(f"/v2/a/b/blobs/{digest}")
    assert r.status_code == 202
    assert client.simulate_get(f"/v2/a/b/blobs/{digest}").status_code == 404


def test_cross_repository_mount(client: falcon.testing.TestClient) -> None:
    digest = push_blob(client, "src/repo", b"shared layer")
    r = client.simulate_post(
        "/v2/dst/repo/blobs/uploads/", params={"mount": digest, "from": "src/repo"}
    )
    assert r.status_code == 201 and r.headers["location"] == f"/v2/dst/repo/blobs/{digest}"
    r = client.simulate_post("/v2/third/repo/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    # from a repository that does not have it: an ordinary upload starts
    r = client.simulate_post(
        "/v2/fourth/repo/blobs/uploads/", params={"mount": digest, "from": "empty/repo"}
    )
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["location"]
    assert client.simulate_get(f"/v2/third/repo/blobs/{digest}").content == b"shared layer"


def test_manifests_by_tag_and_digest(client: falcon.testing.TestClient) -> None:
    body = manifest_for(client, "a/b")
    r = put_manifest(client, "a/b", "v1", body)
    assert r.status_code == 201, r.text
    digest = sha256(body)
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["location"] == f"/v2/a/b/manifests/{digest}"
    for ref in ("v1", digest):
        r = client.simulate_get(f"/v2/a/b/manifests/{ref}")
        assert r.status_code == 200 and r.content == body
        assert r.headers["content-type"] == OCI_MANIFEST
        assert r.headers["docker-content-digest"] == digest
        r = client.simulate_head(f"/v2/a/b/manifests/{ref}")
        assert r.status_code == 200 and r.headers["content-length"] == str(len(body))
    r = client.simulate_get("/v2/a/b/manifests/nope")
    assert r.status_code == 404 and code(r) == "MANIFEST_UNKNOWN"
    r = client.simulate_get("/v2/x/y/manifests/v1")
    assert r.status_code == 404 and code(r) == "NAME_UNKNOWN"
    # by digest, with a body that does not match
    r = put_manifest(client, "a/b", sha256(b"other"), body)
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    # delete the tag, then the manifest
    assert client.simulate_delete("/v2/a/b/manifests/v1").status_code == 202
    assert client.simulate_get("/v2/a/b/manifests/v1").status_code == 404
    assert client.simulate_get(f"/v2/a/b/manifests/{digest}").status_code == 200
    assert client.simulate_delete(f"/v2/a/b/manifests/{digest}").status_code == 202
    assert client.simulate_get(f"/v2/a/b/manifests/{digest}").status_code == 404


def test_manifest_errors(client: falcon.testing.TestClient) -> None:
    r = put_manifest(client, "a/b", "v1", b"not json")
    assert r.status_code == 400 and code(r) == "MANIFEST_INVALID"
    missing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(b"{}"),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    r = put_manifest(client, "a/b", "v1", missing)
    assert r.status_code == 400 and code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = put_manifest(client, "Bad/Name", "v1", missing)
    assert r.status_code == 400 and code(r) == "NAME_INVALID"
    r = put_manifest(client, "a/b", "bad:tag:", missing)
    assert r.status_code == 400 and code(r) in {"MANIFEST_INVALID", "DIGEST_INVALID", "UNSUPPORTED"}
    r = client.simulate_put(
        "/v2/a/b/manifests/big",
        body=b"x" * (4 * 1024 * 1024 + 1),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 413


def test_referrers_and_subject(client: falcon.testing.TestClient) -> None:
    subject_body = manifest_for(client, "a/b")
    put_manifest(client, "a/b", "v1", subject_body)
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(subject_body), "size": len(subject_body)}
    sbom = manifest_for(
        client, "a/b", "sbom", subject=subject, artifactType="application/spdx+json"
    )
    r = put_manifest(client, "a/b", sha256(sbom), sbom)
    assert r.status_code == 201 and r.headers["oci-subject"] == sha256(subject_body)
    sig = manifest_for(client, "a/b", "sig", subject=subject, artifactType="application/x-sig")
    put_manifest(client, "a/b", sha256(sig), sig)
    r = client.simulate_get(f"/v2/a/b/referrers/{sha256(subject_body)}")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    assert {m["digest"] for m in r.json["manifests"]} == {sha256(sbom), sha256(sig)}
    assert "oci-filters-applied" not in r.headers
    r = client.simulate_get(
        f"/v2/a/b/referrers/{sha256(subject_body)}",
        params={"artifactType": "application/spdx+json"},
    )
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in r.json["manifests"]] == [sha256(sbom)]
    assert r.json["manifests"][0]["artifactType"] == "application/spdx+json"
    r = client.simulate_get(f"/v2/a/b/referrers/{sha256(b'nothing')}")
    assert r.status_code == 200 and r.json["manifests"] == []
    r = client.simulate_get("/v2/a/b/referrers/sha256:bad")
    assert r.status_code == 400


def test_tag_list_and_catalog_paging(client: falcon.testing.TestClient) -> None:
    body = manifest_for(client, "a/b")
    for tag in ("t1", "t2", "t3", "t4", "t5"):
        assert put_manifest(client, "a/b", tag, body).status_code == 201
    r = client.simulate_get("/v2/a/b/tags/list")
    assert r.json == {"name": "a/b", "tags": ["t1", "t2", "t3", "t4", "t5"]}
    assert "link" not in r.headers
    r = client.simulate_get("/v2/a/b/tags/list", params={"n": "2"})
    assert r.json["tags"] == ["t1", "t2"]
    assert r.headers["link"] == '</v2/a/b/tags/list?n=2&last=t2>; rel="next"'
    r = client.simulate_get("/v2/a/b/tags/list", params={"n": "2", "last": "t4"})
    assert r.json["tags"] == ["t5"] and "link" not in r.headers
    assert client.simulate_get("/v2/a/b/tags/list", params={"n": "0"}).json["tags"] == []
    assert client.simulate_get("/v2/a/b/tags/list", params={"n": "-1"}).status_code == 400
    r = client.simulate_get("/v2/no/repo/tags/list")
    assert r.status_code == 404 and code(r) == "NAME_UNKNOWN"
    push_blob(client, "c/d", b"x")
    r = client.simulate_get("/v2/_catalog", params={"n": "1"})
    assert r.json == {"repositories": ["a/b"]}
    assert r.headers["link"] == '</v2/_catalog?n=1&last=a%2Fb>; rel="next"'
    assert client.simulate_get("/v2/_catalog", params={"n": "1", "last": "a/b"}).json == {
        "repositories": ["c/d"]
    }


def test_unknown_paths_and_methods(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/v2/a/b/nothing/here")
    assert r.status_code == 404 and code(r) == "NOT_FOUND"
    r = client.simulate_post("/v2/a/b/tags/list")
    assert r.status_code == 405 and code(r) == "UNSUPPORTED"
    assert r.headers["allow"] == "GET"


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def test_docker_schema2_manifest_and_manifest_list(client: falcon.testing.TestClient) -> None:
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"docker layer"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": push_blob(client, "d/img", config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": push_blob(client, "d/img", layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.simulate_put(
        "/v2/d/img/manifests/amd64", body=manifest, headers={"Content-Type": DOCKER_MANIFEST}
    )
    assert r.status_code == 201, r.text
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    r = client.simulate_put(
        "/v2/d/img/manifests/latest", body=listing, headers={"Content-Type": DOCKER_LIST}
    )
    assert r.status_code == 201, r.text
    r = client.simulate_get("/v2/d/img/manifests/latest")
    assert r.headers["content-type"] == DOCKER_LIST and r.content == listing
    r = client.simulate_get("/v2/d/img/manifests/amd64")
    assert r.headers["content-type"] == DOCKER_MANIFEST and r.content == manifest


def test_sha512_blobs_and_manifests(client: falcon.testing.TestClient) -> None:
    data = b"content addressed by sha512"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.simulate_post("/v2/s/512/blobs/uploads/", params={"digest": digest}, body=data)
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    assert client.simulate_get(f"/v2/s/512/blobs/{digest}").content == data
    body = manifest_for(client, "s/512")
    manifest_digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = put_manifest(client, "s/512", manifest_digest, body)
    assert r.status_code == 201 and r.headers["docker-content-digest"] == manifest_digest
    assert client.simulate_get(f"/v2/s/512/manifests/{manifest_digest}").content == body


def test_cached_listings_and_manifests_follow_writes_made_by_another_process(
    tmp_path: Path,
) -> None:
    """Two containers on one data dir, as two ``--workers`` share the views: what one
    writes, the other's cached tag list and manifest bodies reflect at once."""
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path / "data", "auth": False})
    first, second = bootstrap(settings), bootstrap(settings, create_tables=False)
    try:
        reader = falcon.testing.TestClient(create_app(first))
        writer = falcon.testing.TestClient(create_app(second))
        body = manifest_for(writer, "a/b")
        assert put_manifest(writer, "a/b", "t1", body).status_code == 201
        for _ in range(2):  # the second answer comes from the cache
            assert reader.simulate_get("/v2/a/b/tags/list").json["tags"] == ["t1"]
            assert reader.simulate_get("/v2/a/b/manifests/t1").content == body
        page = reader.simulate_get("/v2/a/b/tags/list", params={"n": "1"})
        assert page.json["tags"] == ["t1"] and "link" not in page.headers
        assert put_manifest(writer, "a/b", "t2", body).status_code == 201
        assert reader.simulate_get("/v2/a/b/tags/list").json["tags"] == ["t1", "t2"]
        page = reader.simulate_get("/v2/a/b/tags/list", params={"n": "1"})
        assert page.headers["link"] == '</v2/a/b/tags/list?n=1&last=t1>; rel="next"'
        assert writer.simulate_delete("/v2/a/b/manifests/t1").status_code == 202
        assert reader.simulate_get("/v2/a/b/tags/list").json["tags"] == ["t2"]
        r = reader.simulate_get("/v2/a/b/manifests/t1")
        assert r.status_code == 404 and code(r) == "MANIFEST_UNKNOWN"
        assert writer.simulate_delete(f"/v2/a/b/manifests/{sha256(body)}").status_code == 202
        r = reader.simulate_get(f"/v2/a/b/manifests/{sha256(body)}")
        assert r.status_code == 404  # the body is still cached; the views say it is gone
    finally:
        first.close()
        second.close()
