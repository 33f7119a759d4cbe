"""Which missing references a pushed manifest may have, under each SparsePolicy."""

from __future__ import annotations

import json
import uuid

import pytest

from cargohold.domain.context import EventContext
from cargohold.domain.errors import ManifestBlobUnknown
from cargohold.domain.manifest import parse_manifest
from cargohold.domain.repository import Repository
from cargohold.domain.repository_rules import SparsePolicy
from cargohold.domain.values import Actor, Digest, HLCTimestamp, RepositoryName

CTX = EventContext(Actor.system(), uuid.UUID(int=7), HLCTimestamp(1), "r")
CONFIG = Digest.of(b"config")
LAYER = Digest.of(b"layer")
MISSING = Digest.of(b"never pushed")


def _image(layer: Digest) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(CONFIG),
                "size": 6,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer),
                    "size": 5,
                }
            ],
        }
    ).encode()


def _index(*children: Digest) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": str(c),
                    "size": 9,
                }
                for c in children
            ],
        }
    ).encode()


def _repo() -> Repository:
    repo = Repository.create(RepositoryName("a/b"), CTX)
    repo.link_blob(CONFIG, 6, CTX)
    repo.link_blob(LAYER, 5, CTX)
    return repo


def _push(repo: Repository, body: bytes, policy: SparsePolicy) -> Digest:
    digest = Digest.of(body)
    repo.push_manifest(parse_manifest(body, None, digest), CTX, policy)
    return digest


@pytest.mark.parametrize(
    ("policy", "missing_layer_ok", "missing_child_ok"),
    [
        (SparsePolicy.STRICT, False, False),
        (SparsePolicy.INDEX, False, True),
        (SparsePolicy.ALL, True, True),
        (SparsePolicy.UPSTREAM, True, True),
    ],
)
def test_policies(policy: SparsePolicy, missing_layer_ok: bool, missing_child_ok: bool) -> None:
    repo = _repo()
    present = _push(repo, _image(LAYER), policy)
    if missing_layer_ok:
        assert _push(repo, _image(MISSING), policy) in repo.manifests
    else:
        with pytest.raises(ManifestBlobUnknown, match=str(MISSING)):
            _push(repo, _image(MISSING), policy)
    if missing_child_ok:
        assert _push(repo, _index(present, MISSING), policy) in repo.manifests
    else:
        with pytest.raises(ManifestBlobUnknown, match=str(MISSING)):
            _push(repo, _index(present, MISSING), policy)


@pytest.mark.parametrize("policy", [p for p in SparsePolicy if p is not SparsePolicy.UPSTREAM])
def test_the_config_is_required_but_by_a_cache(policy: SparsePolicy) -> None:
    repo = Repository.create(RepositoryName("a/b"), CTX)
    repo.link_blob(LAYER, 5, CTX)
    with pytest.raises(ManifestBlobUnknown, match="config"):
        _push(repo, _image(LAYER), policy)


def test_a_cache_records_a_manifest_whose_references_are_all_upstream() -> None:
    repo = Repository.create(RepositoryName("a/b"), CTX)
    image = _push(repo, _image(MISSING), SparsePolicy.UPSTREAM)
    assert image in repo.manifests and not repo.blobs
    assert _push(repo, _index(image, MISSING), SparsePolicy.UPSTREAM) in repo.manifests
