"""Manifest parsing and validation: the bytes of a PUT become a ``ParsedManifest``.

Accepted kinds (``MANIFEST_MEDIA_TYPES``):

- OCI image manifest (image-spec ``manifest.md``), including artifacts: ``artifactType``
  and/or the empty config ``application/vnd.oci.empty.v1+json``, and a ``subject``;
- OCI image index (image-spec ``image-index.md``), with optional ``subject``;
- Docker image manifest v2 schema 2 and Docker manifest list.

Rejected with ``ManifestInvalid``: anything that is not a UTF-8 JSON object, a
``schemaVersion`` other than 2 (so Docker schema 1), an unknown or missing media type, a
``mediaType`` that disagrees with the request's Content-Type, malformed descriptors
(including a digest off the grammar or of an algorithm we do not verify: the distribution
registry reports both as ``MANIFEST_INVALID`` when they sit inside a manifest), negative
sizes, and fields of the wrong JSON type. A body whose digest differs from the ``digest``
argument raises ``DigestInvalid``.

Media type resolution: the body's ``mediaType`` when present (and then a specific
Content-Type must agree with it); else the Content-Type; else inferred from the shape
(``manifests`` -> OCI index, ``config`` -> OCI image manifest). A missing, empty or
``application/json`` Content-Type counts as "not given", as in the distribution registry.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from cargohold.domain.errors import DigestInvalid, InvalidInput, ManifestInvalid
from cargohold.domain.values import Descriptor, Digest, MediaType

OCI_MANIFEST: Final = MediaType("application/vnd.oci.image.manifest.v1+json")
OCI_INDEX: Final = MediaType("application/vnd.oci.image.index.v1+json")
DOCKER_MANIFEST: Final = MediaType("application/vnd.docker.distribution.manifest.v2+json")
DOCKER_MANIFEST_LIST: Final = MediaType("application/vnd.docker.distribution.manifest.list.v2+json")
OCI_EMPTY_CONFIG: Final = MediaType("application/vnd.oci.empty.v1+json")

MANIFEST_MEDIA_TYPES: Final = frozenset(
    {OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST}
)
IMAGE_MANIFEST_MEDIA_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

_DOCKER_SCHEMA1_MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
_OCI_ARTIFACT_MANIFEST: Final = "application/vnd.oci.artifact.manifest.v1+json"
# Content-Types that say nothing about which manifest this is.
_GENERIC_CONTENT_TYPES: Final = frozenset({"", "application/json"})
# Descriptor sizes are int64 in the Go reference implementations.
_MAX_SIZE: Final = 2**63 - 1


@dataclass(frozen=True)
class ParsedManifest:
    """A validated manifest: what the registry needs to know about it, not its bytes.

    ``layers`` are the blobs an image manifest references (empty for an index);
    ``manifests`` are the children of an index (empty for an image manifest).
    """

    digest: Digest
    media_type: MediaType
    size: int
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: MediaType | None
    annotations: dict[str, str] | None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def effective_artifact_type(self) -> MediaType | None:
        """The artifact type the referrers API reports for this manifest.

        ``artifactType`` when set; for an image manifest without one, the config's media
        type; for an index without one, ``None``.
        """
        if self.artifact_type is not None:
            return self.artifact_type
        if self.config is not None:
            return self.config.media_type
        return None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """The config (if any) followed by the layers: every blob this manifest names."""
        if self.config is None:
            return self.layers
        return (self.config, *self.layers)


def parse_manifest(body: bytes, content_type: str | None, digest: Digest) -> ParsedManifest:
    """Validate ``body`` as a manifest and describe it.

    ``content_type`` is the request's Content-Type header (parameters are ignored);
    ``digest`` is the digest the caller computed or was given for the body, checked here
    with the same algorithm. Raises ``ManifestInvalid`` for a body that is not a valid
    manifest and ``DigestInvalid`` when ``digest`` does not match the body.
    """
    if Digest.of(body, digest.algorithm) != digest:
        raise DigestInvalid(f"manifest body does not match digest {digest}")
    doc = _load_json(body)

    schema_version = doc.get("schemaVersion")
    if _is_int(schema_version) and schema_version == 1:
        _invalid("Docker image manifest schema 1 is not supported; push schema 2 or OCI")
    if not _is_int(schema_version) or schema_version != 2:
        _invalid(f"schemaVersion must be 2, got {_show(schema_version)}")

    media_type = _resolve_media_type(doc, content_type)
    if media_type in INDEX_MEDIA_TYPES:
        return _parse_index(doc, media_type, body, digest)
    return _parse_image_manifest(doc, media_type, body, digest)


def _parse_image_manifest(
    doc: dict[str, Any], media_type: MediaType, body: bytes, digest: Digest
) -> ParsedManifest:
    if "manifests" in doc:
        _invalid(f"{media_type} must not have a 'manifests' field (is it an index?)")
    if "config" not in doc:
        _invalid(f"{media_type} requires a 'config' descriptor")
    config = _descriptor(doc["config"], "config")
    if "layers" not in doc:
        _invalid(f"{media_type} requires a 'layers' array")
    layers = _descriptors(doc["layers"], "layers")
    is_oci = media_type == OCI_MANIFEST
    return ParsedManifest(
        digest=digest,
        media_type=media_type,
        size=len(body),
        config=config,
        layers=layers,
        manifests=(),
        subject=_optional_descriptor(doc, "subject") if is_oci else None,
        artifact_type=_optional_media_type(doc, "artifactType") if is_oci else None,
        annotations=_optional_annotations(doc, "annotations"),
    )


def _parse_index(
    doc: dict[str, Any], media_type: MediaType, body: bytes, digest: Digest
) -> ParsedManifest:
    for field in ("config", "layers"):
        if field in doc:
            _invalid(f"{media_type} must not have a {field!r} field (is it a manifest?)")
    if "manifests" not in doc:
        _invalid(f"{media_type} requires a 'manifests' array")
    manifests = _descriptors(doc["manifests"], "manifests")
    is_oci = media_type == OCI_INDEX
    return ParsedManifest(
        digest=digest,
        media_type=media_type,
        size=len(body),
        config=None,
        layers=(),
        manifests=manifests,
        subject=_optional_descriptor(doc, "subject") if is_oci else None,
        artifact_type=_optional_media_type(doc, "artifactType") if is_oci else None,
        annotations=_optional_annotations(doc, "annotations"),
    )


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _invalid("manifest is not UTF-8")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ManifestInvalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        _invalid(f"manifest must be a JSON object, got {_json_type(doc)}")
    return doc


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _resolve_media_type(doc: Mapping[str, Any], content_type: str | None) -> MediaType:
    given = _normalise_content_type(content_type)
    if "mediaType" in doc:
        declared = doc["mediaType"]
        if not isinstance(declared, str):
            _invalid(f"mediaType must be a string, got {_json_type(declared)}")
        _check_known(declared)
        if given is not None and given != declared.lower():
            _invalid(
                f"mediaType {declared!r} in the manifest does not match Content-Type {given!r}"
            )
        media_type = MediaType(declared)
    elif given is not None:
        _check_known(given)
        media_type = MediaType(given)
    elif "manifests" in doc and "config" not in doc:
        media_type = OCI_INDEX
    elif "config" in doc and "manifests" not in doc:
        media_type = OCI_MANIFEST
    else:
        _invalid("cannot tell the manifest's media type: no mediaType and no Content-Type")
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST) and "mediaType" not in doc:
        _invalid(f"{media_type} requires a mediaType field in the manifest")
    return media_type


def _normalise_content_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    essence = content_type.split(";", 1)[0].strip().lower()
    return None if essence in _GENERIC_CONTENT_TYPES else essence


def _check_known(media_type: str) -> None:
    if media_type in MANIFEST_MEDIA_TYPES:
        return
    if media_type in _DOCKER_SCHEMA1_MEDIA_TYPES:
        _invalid("Docker image manifest schema 1 is not supported; push schema 2 or OCI")
    if media_type == _OCI_ARTIFACT_MANIFEST:
        _invalid(
            f"{_OCI_ARTIFACT_MANIFEST} was dropped from OCI 1.1; push an image manifest "
            "with artifactType instead"
        )
    _invalid(f"unknown manifest media type {media_type[:200]!r}")


def _descriptors(value: Any, where: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        _invalid(f"{where} must be an array, got {_json_type(value)}")
    return tuple(_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def _optional_descriptor(doc: Mapping[str, Any], field: str) -> Descriptor | None:
    value = doc.get(field)
    return None if value is None else _descriptor(value, field)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        _invalid(f"{where} must be a descriptor object, got {_json_type(value)}")
    for required in ("mediaType", "digest", "size"):
        if required not in value:
            _invalid(f"{where} lacks the required field {required!r}")
    media_type = _media_type(value["mediaType"], f"{where}.mediaType")
    digest = _digest(value["digest"], f"{where}.digest")
    size = value["size"]
    if not _is_int(size):
        _invalid(f"{where}.size must be an integer, got {_json_type(size)}")
    if size < 0 or size > _MAX_SIZE:
        _invalid(f"{where}.size out of range: {size}")
    urls = value.get("urls")
    if urls is None:
        urls = []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        _invalid(f"{where}.urls must be an array of strings")
    platform = value.get("platform")
    if platform is not None:
        _check_platform(platform, f"{where}.platform")
    data = value.get("data")
    if data is not None:
        _check_data(data, digest, size, f"{where}.data")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_media_type(value, "artifactType", where),
        annotations=_optional_annotations(value, "annotations", where),
        platform=platform,
        urls=tuple(urls),
    )


def _check_platform(platform: Any, where: str) -> None:
    if not isinstance(platform, dict):
        _invalid(f"{where} must be an object, got {_json_type(platform)}")
    for required in ("architecture", "os"):
        if not isinstance(platform.get(required), str):
            _invalid(f"{where}.{required} must be a string")
    for optional in ("os.version", "variant"):
        if optional in platform and not isinstance(platform[optional], str):
            _invalid(f"{where}.{optional} must be a string")
    for optional in ("os.features", "features"):
        if optional in platform:
            items = platform[optional]
            if not isinstance(items, list) or not all(isinstance(f, str) for f in items):
                _invalid(f"{where}.{optional} must be an array of strings")


def _check_data(data: Any, digest: Digest, size: int, where: str) -> None:
    if not isinstance(data, str):
        _invalid(f"{where} must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        _invalid(f"{where} is not valid base64")
    if len(raw) != size or Digest.of(raw, digest.algorithm) != digest:
        _invalid(f"{where} does not match the descriptor's digest and size")


def _media_type(value: Any, where: str) -> MediaType:
    if not isinstance(value, str):
        _invalid(f"{where} must be a string, got {_json_type(value)}")
    try:
        return MediaType(value)
    except InvalidInput as e:
        raise ManifestInvalid(f"{where}: {e.message}") from e


def _optional_media_type(doc: Mapping[str, Any], field: str, where: str = "") -> MediaType | None:
    value = doc.get(field)
    return None if value is None else _media_type(value, _path(where, field))


def _digest(value: Any, where: str) -> Digest:
    if not isinstance(value, str):
        _invalid(f"{where} must be a string, got {_json_type(value)}")
    try:
        return Digest.parse(value)
    except InvalidInput as e:
        raise ManifestInvalid(f"{where}: {e.message}") from e


def _optional_annotations(
    doc: Mapping[str, Any], field: str, where: str = ""
) -> dict[str, str] | None:
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        _invalid(f"{_path(where, field)} must be an object of string values")
    return dict(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any) -> str:
    return repr(value)[:50] if _is_int(value) or isinstance(value, str) else _json_type(value)


def _path(where: str, field: str) -> str:
    return f"{where}.{field}" if where else field


def _invalid(message: str) -> NoReturn:
    raise ManifestInvalid(message)
