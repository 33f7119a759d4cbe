"""Manifest parsing: every kind the registry accepts, and many bodies it must refuse."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargohold.domain.errors import DigestInvalid, ManifestInvalid
from cargohold.domain.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_EMPTY_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    ParsedManifest,
    parse_manifest,
)
from cargohold.domain.values import Descriptor, Digest, DigestAlgorithm, MediaType

CONFIG_DIGEST = str(Digest.of(b"config"))
LAYER_DIGEST = str(Digest.of(b"layer"))
CHILD_DIGEST = str(Digest.of(b"child"))
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def oci_manifest(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": 6,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": LAYER_DIGEST,
                "size": 5,
            }
        ],
    }
    doc.update(extra)
    return doc


def oci_index(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": CHILD_DIGEST,
                "size": 5,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": LAYER_DIGEST,
                "size": 5,
                "platform": {
                    "architecture": "arm64",
                    "os": "linux",
                    "variant": "v8",
                    "os.features": ["x"],
                },
            },
        ],
    }
    doc.update(extra)
    return doc


def docker_manifest() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": CONFIG_DIGEST,
            "size": 6,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": LAYER_DIGEST,
                "size": 5,
            },
            {
                "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                "digest": CHILD_DIGEST,
                "size": 5,
                "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"],
            },
        ],
    }


def docker_list() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST,
                "digest": CHILD_DIGEST,
                "size": 5,
                "platform": {"architecture": "ppc64le", "os": "linux"},
            }
        ],
    }


def body_of(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def parse(doc: Any, content_type: str | None = None) -> ParsedManifest:
    body = doc if isinstance(doc, bytes) else body_of(doc)
    return parse_manifest(body, content_type, Digest.of(body))


# Valid manifests


def test_oci_image_manifest() -> None:
    body = body_of(oci_manifest(annotations={"a": "b"}))
    m = parse_manifest(body, OCI_MANIFEST, Digest.of(body))
    assert m.digest == Digest.of(body)
    assert m.media_type == OCI_MANIFEST
    assert m.size == len(body)
    assert m.config == Descriptor(
        MediaType("application/vnd.oci.image.config.v1+json"), Digest.parse(CONFIG_DIGEST), 6
    )
    assert m.layers == (
        Descriptor(
            MediaType("application/vnd.oci.image.layer.v1.tar+gzip"),
            Digest.parse(LAYER_DIGEST),
            5,
        ),
    )
    assert m.manifests == ()
    assert m.subject is None and m.artifact_type is None
    assert m.annotations == {"a": "b"}
    assert m.effective_artifact_type == "application/vnd.oci.image.config.v1+json"
    assert not m.is_index
    assert m.blobs == (m.config, *m.layers)


def test_oci_artifact_with_empty_config_and_subject() -> None:
    doc = oci_manifest(
        artifactType="application/vnd.example.sbom.v1+json",
        config={
            "mediaType": OCI_EMPTY_CONFIG,
            "digest": EMPTY_DIGEST,
            "size": 2,
            "data": base64.b64encode(b"{}").decode(),
        },
        subject={"mediaType": OCI_MANIFEST, "digest": CHILD_DIGEST, "size": 1234},
    )
    m = parse(doc, OCI_MANIFEST)
    assert m.artifact_type == "application/vnd.example.sbom.v1+json"
    assert m.effective_artifact_type == "application/vnd.example.sbom.v1+json"
    assert m.config is not None and m.config.media_type == OCI_EMPTY_CONFIG
    assert m.subject == Descriptor(OCI_MANIFEST, Digest.parse(CHILD_DIGEST), 1234)


def test_artifact_with_no_layers() -> None:
    m = parse(oci_manifest(layers=[], artifactType="application/x.sig"))
    assert m.layers == ()


def test_oci_index() -> None:
    m = parse(oci_index(annotations={"k": "v"}), OCI_INDEX)
    assert m.media_type == OCI_INDEX
    assert m.is_index
    assert m.config is None and m.layers == ()
    assert [str(d.digest) for d in m.manifests] == [CHILD_DIGEST, LAYER_DIGEST]
    assert m.manifests[1].platform == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.features": ["x"],
    }
    assert m.effective_artifact_type is None


def test_oci_index_with_subject_and_artifact_type() -> None:
    m = parse(
        oci_index(
            artifactType="application/x.bundle",
            subject={"mediaType": OCI_INDEX, "digest": CONFIG_DIGEST, "size": 3},
        )
    )
    assert m.effective_artifact_type == "application/x.bundle"
    assert m.subject is not None and m.subject.media_type == OCI_INDEX


def test_docker_schema2_manifest_with_a_foreign_layer() -> None:
    m = parse(docker_manifest(), DOCKER_MANIFEST)
    assert m.media_type == DOCKER_MANIFEST
    assert m.layers[1].urls == ("https://mcr.microsoft.com/v2/windows/blobs/x",)
    assert m.effective_artifact_type == "application/vnd.docker.container.image.v1+json"


def test_docker_manifest_list() -> None:
    m = parse(docker_list(), DOCKER_MANIFEST_LIST)
    assert m.media_type == DOCKER_MANIFEST_LIST
    assert m.is_index
    assert [str(d.digest) for d in m.manifests] == [CHILD_DIGEST]


def test_descriptor_fields_are_kept() -> None:
    doc = oci_manifest()
    doc["layers"][0].update(
        annotations={"org.opencontainers.image.title": "a.txt"},
        artifactType="application/x",
        urls=["https://example.com/a"],
    )
    layer = parse(doc).layers[0]
    assert layer.annotations == {"org.opencontainers.image.title": "a.txt"}
    assert layer.artifact_type == "application/x"
    assert layer.urls == ("https://example.com/a",)


def test_sha512_descriptors() -> None:
    doc = oci_manifest()
    doc["layers"][0]["digest"] = str(Digest.of(b"layer", DigestAlgorithm.SHA512))
    assert parse(doc).layers[0].digest.algorithm is DigestAlgorithm.SHA512


def test_sha512_manifest_digest() -> None:
    body = body_of(oci_manifest())
    digest = Digest.of(body, DigestAlgorithm.SHA512)
    assert parse_manifest(body, None, digest).digest == digest


def test_unknown_fields_are_ignored() -> None:
    m = parse(oci_manifest(extra={"x": [1, 2]}, **{"x-vendor": True}))
    assert m.media_type == OCI_MANIFEST


# Media type resolution


def test_media_type_from_content_type_when_body_has_none() -> None:
    doc = oci_index()
    del doc["mediaType"]
    assert parse(doc, OCI_INDEX).media_type == OCI_INDEX


@pytest.mark.parametrize("content_type", [None, "", "application/json"])
def test_media_type_inferred_from_shape(content_type: str | None) -> None:
    manifest, index = oci_manifest(), oci_index()
    del manifest["mediaType"], index["mediaType"]
    assert parse(manifest, content_type).media_type == OCI_MANIFEST
    assert parse(index, content_type).media_type == OCI_INDEX


@pytest.mark.parametrize(
    "content_type",
    [
        f"{OCI_MANIFEST}; charset=utf-8",
        f" {OCI_MANIFEST} ",
        OCI_MANIFEST.upper(),
        "application/json",
        None,
    ],
)
def test_content_type_agreeing_with_the_body(content_type: str | None) -> None:
    assert parse(oci_manifest(), content_type).media_type == OCI_MANIFEST


@pytest.mark.parametrize("content_type", [OCI_INDEX, DOCKER_MANIFEST, "application/octet-stream"])
def test_content_type_disagreeing_with_the_body(content_type: str) -> None:
    with pytest.raises(ManifestInvalid, match="does not match Content-Type"):
        parse(oci_manifest(), content_type)


def test_content_type_declares_a_manifest_but_body_is_an_index() -> None:
    doc = oci_index()
    del doc["mediaType"]
    with pytest.raises(ManifestInvalid, match=r"requires a 'config'|must not have"):
        parse(doc, OCI_MANIFEST)


def test_unknown_content_type_without_media_type_in_body() -> None:
    doc = oci_manifest()
    del doc["mediaType"]
    with pytest.raises(ManifestInvalid, match="unknown manifest media type"):
        parse(doc, "text/plain")


def test_docker_media_type_must_be_in_the_body() -> None:
    doc = docker_manifest()
    del doc["mediaType"]
    with pytest.raises(ManifestInvalid, match="requires a mediaType"):
        parse(doc, DOCKER_MANIFEST)


def test_shape_without_config_or_manifests_cannot_be_inferred() -> None:
    with pytest.raises(ManifestInvalid, match="cannot tell"):
        parse({"schemaVersion": 2, "layers": []})


def test_shape_with_both_config_and_manifests_cannot_be_inferred() -> None:
    doc = oci_manifest(manifests=[])
    del doc["mediaType"]
    with pytest.raises(ManifestInvalid, match="cannot tell"):
        parse(doc)


# Invalid manifests


def _without(doc: dict[str, Any], *path: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


def _with(doc: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


INVALID: dict[str, tuple[Any, str]] = {
    "not json": (b"{not json", "not valid JSON"),
    "empty body": (b"", "not valid JSON"),
    "not utf-8": (b'{"schemaVersion": 2, "x": "\xff"}', "not UTF-8"),
    "NaN": (b'{"schemaVersion": NaN}', "not valid JSON"),
    "array": ([oci_manifest()], "must be a JSON object, got array"),
    "string": ("manifest", "must be a JSON object, got string"),
    "null": (None, "must be a JSON object, got null"),
    "no schemaVersion": (_without(oci_manifest(), "schemaVersion"), "schemaVersion must be 2"),
    "schemaVersion 3": (oci_manifest(schemaVersion=3), "schemaVersion must be 2"),
    "schemaVersion string": (oci_manifest(schemaVersion="2"), "schemaVersion must be 2"),
    "schemaVersion float": (oci_manifest(schemaVersion=2.0), "schemaVersion must be 2"),
    "schemaVersion true": (oci_manifest(schemaVersion=True), "schemaVersion must be 2"),
    "docker schema1": (
        {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": [], "history": []},
        "schema 1 is not supported",
    ),
    "schema1 media type": (
        oci_manifest(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws"),
        "schema 1 is not supported",
    ),
    "oci artifact manifest": (
        oci_manifest(mediaType="application/vnd.oci.artifact.manifest.v1+json"),
        "dropped from OCI 1.1",
    ),
    "unknown media type": (
        oci_manifest(mediaType="application/vnd.example+json"),
        "unknown manifest media type",
    ),
    "layer media type as manifest": (
        oci_manifest(mediaType="application/vnd.oci.image.layer.v1.tar"),
        "unknown manifest media type",
    ),
    "media type not a string": (oci_manifest(mediaType=5), "mediaType must be a string"),
    "no config": (_without(oci_manifest(), "config"), "requires a 'config'"),
    "null config": (oci_manifest(config=None), "config must be a descriptor object"),
    "config is a string": (oci_manifest(config=CONFIG_DIGEST), "config must be a descriptor"),
    "no layers": (_without(oci_manifest(), "layers"), "requires a 'layers'"),
    "layers is an object": (oci_manifest(layers={}), "layers must be an array"),
    "layer is null": (oci_manifest(layers=[None]), r"layers\[0\] must be a descriptor"),
    "manifest with manifests": (oci_manifest(manifests=[]), "must not have a 'manifests'"),
    "index without manifests": (_without(oci_index(), "manifests"), "requires a 'manifests'"),
    "index manifests not array": (oci_index(manifests={}), "manifests must be an array"),
    "index with config": (
        oci_index(config=oci_manifest()["config"]),
        "must not have a 'config'",
    ),
    "index with layers": (oci_index(layers=[]), "must not have a 'layers'"),
    "docker list with layers": (
        _with(docker_list(), [], "layers"),
        "must not have a 'layers'",
    ),
    "docker manifest without config": (
        _without(docker_manifest(), "config"),
        "requires a 'config'",
    ),
    "descriptor without digest": (
        _without(oci_manifest(), "layers", 0, "digest"),
        r"layers\[0\] lacks the required field 'digest'",
    ),
    "descriptor without size": (
        _without(oci_manifest(), "config", "size"),
        "config lacks the required field 'size'",
    ),
    "descriptor without media type": (
        _without(oci_manifest(), "config", "mediaType"),
        "config lacks the required field 'mediaType'",
    ),
    "bad digest": (_with(oci_manifest(), "sha256:abc", "layers", 0, "digest"), "layers"),
    "uppercase digest": (
        _with(oci_manifest(), LAYER_DIGEST.upper(), "layers", 0, "digest"),
        r"layers\[0\].digest",
    ),
    "unsupported digest": (
        _with(oci_manifest(), "sha384:" + "a" * 96, "config", "digest"),
        "unsupported digest algorithm",
    ),
    "digest not a string": (_with(oci_manifest(), 5, "config", "digest"), "must be a string"),
    "negative size": (_with(oci_manifest(), -1, "layers", 0, "size"), "size out of range"),
    "huge size": (_with(oci_manifest(), 2**63, "layers", 0, "size"), "size out of range"),
    "float size": (_with(oci_manifest(), 5.0, "layers", 0, "size"), "must be an integer"),
    "string size": (_with(oci_manifest(), "5", "layers", 0, "size"), "must be an integer"),
    "bool size": (_with(oci_manifest(), True, "layers", 0, "size"), "must be an integer"),
    "bad descriptor media type": (
        _with(oci_manifest(), "not a media type", "layers", 0, "mediaType"),
        r"layers\[0\].mediaType",
    ),
    "descriptor media type not a string": (
        _with(oci_manifest(), ["a/b"], "config", "mediaType"),
        "config.mediaType must be a string",
    ),
    "urls not a list": (
        _with(oci_manifest(), "https://x", "layers", 0, "urls"),
        "urls must be an array of strings",
    ),
    "urls with a number": (
        _with(oci_manifest(), [1], "layers", 0, "urls"),
        "urls must be an array of strings",
    ),
    "annotations not an object": (oci_manifest(annotations=["a"]), "annotations must be"),
    "annotation value not a string": (
        oci_manifest(annotations={"a": 1}),
        "annotations must be an object of string values",
    ),
    "descriptor annotation value not a string": (
        _with(oci_manifest(), {"a": None}, "layers", 0, "annotations"),
        r"layers\[0\].annotations",
    ),
    "bad artifactType": (oci_manifest(artifactType="nope"), "artifactType"),
    "artifactType not a string": (oci_manifest(artifactType=1), "artifactType must be"),
    "subject not a descriptor": (oci_manifest(subject="x"), "subject must be a descriptor"),
    "subject without digest": (
        oci_manifest(subject={"mediaType": OCI_MANIFEST, "size": 1}),
        "subject lacks the required field 'digest'",
    ),
    "platform not an object": (
        _with(oci_index(), "linux/amd64", "manifests", 0, "platform"),
        "platform must be an object",
    ),
    "platform without os": (
        _with(oci_index(), {"architecture": "amd64"}, "manifests", 0, "platform"),
        "platform.os must be a string",
    ),
    "platform features not strings": (
        _with(
            oci_index(),
            {"architecture": "amd64", "os": "linux", "os.features": [1]},
            "manifests",
            0,
            "platform",
        ),
        "os.features must be an array of strings",
    ),
    "child with bad digest": (
        _with(oci_index(), "sha256:" + "z" * 64, "manifests", 1, "digest"),
        r"manifests\[1\].digest",
    ),
    "data not base64": (
        _with(oci_manifest(), "not base64!", "config", "data"),
        "config.data is not valid base64",
    ),
    "data not matching": (
        _with(oci_manifest(), base64.b64encode(b"other!").decode(), "config", "data"),
        "does not match the descriptor",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_manifests(case: str) -> None:
    doc, message = INVALID[case]
    with pytest.raises(ManifestInvalid, match=message):
        parse(doc)


def test_digest_must_match_the_body() -> None:
    body = body_of(oci_manifest())
    with pytest.raises(DigestInvalid, match="does not match"):
        parse_manifest(body, None, Digest.of(b"something else"))


def test_manifest_invalid_is_not_digest_invalid() -> None:
    # A bad digest INSIDE a manifest is MANIFEST_INVALID, not DIGEST_INVALID.
    doc = _with(oci_manifest(), "sha256:abc", "layers", 0, "digest")
    with pytest.raises(ManifestInvalid) as info:
        parse(doc)
    assert not isinstance(info.value, DigestInvalid)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(body: bytes) -> None:
    with contextlib.suppress(ManifestInvalid):
        parse_manifest(body, None, Digest.of(body))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)


@given(
    field=st.sampled_from(["config", "layers", "mediaType", "annotations", "subject"]),
    value=_json,
    content_type=st.none() | st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/json"]),
)
def test_mangled_fields_raise_only_manifest_invalid(
    field: str, value: Any, content_type: str | None
) -> None:
    with contextlib.suppress(ManifestInvalid):
        parse(oci_manifest(**{field: value}), content_type)


def test_parsed_manifest_is_frozen() -> None:
    m = parse(oci_manifest())
    with pytest.raises(AttributeError):
        m.size = 1  # type: ignore[misc]
