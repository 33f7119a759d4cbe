"""The Repository aggregate, given/when/then on its events."""

from __future__ import annotations

import dataclasses
from functools import reduce
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cargohold.domain.context import EventContext
from cargohold.domain.errors import (
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestUnknown,
    TagUnknown,
)
from cargohold.domain.manifest import (
    OCI_EMPTY_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    ParsedManifest,
)
from cargohold.domain.repository import Repository
from cargohold.domain.values import (
    Actor,
    ActorKind,
    Descriptor,
    Digest,
    HLCTimestamp,
    MediaType,
    RepositoryName,
    Tag,
)
from tests import strategies as s

SITE = UUID("5c1a7e00-0000-4000-8000-000000000001")
NAME = RepositoryName("library/ubuntu")
CTX = EventContext(Actor(ActorKind.USER, "alice"), SITE, HLCTimestamp(1000, 0), "req-1")
CTX2 = EventContext(Actor(ActorKind.ROBOT, "org+ci"), SITE, HLCTimestamp(2000, 3), "req-2")
LAYER_TYPE = MediaType("application/vnd.oci.image.layer.v1.tar+gzip")
CONFIG_TYPE = MediaType("application/vnd.oci.image.config.v1+json")

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_CONTEXT = {"actor", "site_id", "hlc", "request_id", "client_address"}


def blob(content: bytes, media_type: MediaType = LAYER_TYPE, **kw: Any) -> Descriptor:
    return Descriptor(media_type, Digest.of(content), len(content), **kw)


def image(
    config: Descriptor,
    *layers: Descriptor,
    subject: Descriptor | None = None,
    artifact_type: MediaType | None = None,
) -> ParsedManifest:
    return ParsedManifest(
        digest=Digest.of(repr((config, layers, subject, artifact_type)).encode()),
        media_type=OCI_MANIFEST,
        size=123,
        config=config,
        layers=tuple(layers),
        manifests=(),
        subject=subject,
        artifact_type=artifact_type,
        annotations={"org.opencontainers.image.title": "x"},
    )


def index(*children: ParsedManifest) -> ParsedManifest:
    return ParsedManifest(
        digest=Digest.of(repr([c.digest for c in children]).encode()),
        media_type=OCI_INDEX,
        size=77,
        config=None,
        layers=(),
        manifests=tuple(Descriptor(c.media_type, c.digest, c.size) for c in children),
        subject=None,
        artifact_type=None,
        annotations=None,
    )


def given_repo(*commands: Any) -> Repository:
    """A repository after ``commands`` (callables of the repository), events collected."""
    repo = Repository.create(NAME, CTX)
    for command in commands:
        command(repo)
    repo.collect_events()
    return repo


def then(repo: Repository) -> list[tuple[str, dict[str, Any]]]:
    """The events the command under test triggered: (class name, payload)."""
    out = []
    for event in repo.collect_events():
        fields = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(event)  # type: ignore[arg-type]
            if f.name not in _ENVELOPE | _CONTEXT
        }
        out.append((type(event).__name__, fields))
    return out


CONFIG = blob(b"{}", CONFIG_TYPE)
LAYER1 = blob(b"layer one")
LAYER2 = blob(b"layer two")
MANIFEST = image(CONFIG, LAYER1, LAYER2)


def linked(*blobs: Descriptor) -> Any:
    def command(repo: Repository) -> None:
        for b in blobs:
            repo.link_blob(b.digest, b.size, CTX)

    return command


def pushed(*manifests: ParsedManifest) -> Any:
    def command(repo: Repository) -> None:
        for m in manifests:
            repo.push_manifest(m, CTX)

    return command


def tagged(tag: str, manifest: ParsedManifest) -> Any:
    return lambda repo: repo.tag(Tag(tag), manifest.digest, CTX)


# Creation and ids


def test_create() -> None:
    repo = Repository.create(NAME, CTX)
    assert repo.id == uuid5(SITE, "repository:library/ubuntu")
    assert repo.version == 1
    assert (repo.name, repo.blobs, repo.manifests, repo.tags) == (NAME, {}, {}, {})
    [created] = repo.collect_events()
    assert isinstance(created, Repository.Created)
    assert created.name == NAME
    assert (created.actor, created.site_id, created.hlc, created.request_id) == (
        CTX.actor,
        SITE,
        CTX.hlc,
        "req-1",
    )


def test_ids_are_deterministic_per_site_and_name() -> None:
    other_site = uuid4()
    assert Repository.create_id(SITE, NAME) == Repository.create_id(SITE, NAME)
    assert Repository.create_id(SITE, NAME) != Repository.create_id(other_site, NAME)
    assert Repository.create_id(SITE, NAME) != Repository.create_id(
        SITE, RepositoryName("library/debian")
    )
    assert Repository.create(NAME, CTX).id == Repository.create(NAME, CTX).id
    # Pinned: the formula is in every stored stream id.
    assert Repository.create_id(SITE, NAME) == UUID("6c864e95-b7c8-554d-be73-45b4428c3466")


def test_every_event_carries_the_command_context() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST))
    repo.tag(Tag("latest"), MANIFEST.digest, CTX2)
    repo.delete_manifest(MANIFEST.digest, CTX2)
    events = repo.collect_events()
    assert len(events) == 3
    for event in events:
        assert isinstance(event, Repository.Event)
        assert (event.actor, event.site_id, event.hlc, event.request_id) == (
            CTX2.actor,
            CTX2.site_id,
            CTX2.hlc,
            CTX2.request_id,
        )


# Blobs


def test_link_blob() -> None:
    repo = given_repo()
    repo.link_blob(LAYER1.digest, LAYER1.size, CTX)
    assert then(repo) == [("BlobLinked", {"digest": LAYER1.digest, "size": LAYER1.size})]
    assert repo.blobs == {LAYER1.digest: LAYER1.size}


def test_link_blob_again_is_a_no_op() -> None:
    repo = given_repo(linked(LAYER1))
    repo.link_blob(LAYER1.digest, LAYER1.size, CTX)
    assert then(repo) == []


def test_link_blob_with_another_size_relinks() -> None:
    repo = given_repo(linked(LAYER1))
    repo.link_blob(LAYER1.digest, 999, CTX)
    assert then(repo) == [("BlobLinked", {"digest": LAYER1.digest, "size": 999})]
    assert repo.blobs[LAYER1.digest] == 999


def test_unlink_blob() -> None:
    repo = given_repo(linked(LAYER1, LAYER2))
    repo.unlink_blob(LAYER1.digest, CTX)
    assert then(repo) == [("BlobUnlinked", {"digest": LAYER1.digest})]
    assert repo.blobs == {LAYER2.digest: LAYER2.size}


def test_unlink_unknown_blob() -> None:
    repo = given_repo()
    with pytest.raises(BlobUnknown, match=LAYER1.digest.hex):
        repo.unlink_blob(LAYER1.digest, CTX)
    assert then(repo) == []


# Manifests


def test_push_manifest() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2))
    repo.push_manifest(MANIFEST, CTX)
    assert then(repo) == [
        (
            "ManifestPushed",
            {
                "digest": MANIFEST.digest,
                "media_type": OCI_MANIFEST,
                "size": 123,
                "config": CONFIG,
                "layers": (LAYER1, LAYER2),
                "manifests": (),
                "subject": None,
                "artifact_type": None,
                "annotations": {"org.opencontainers.image.title": "x"},
            },
        )
    ]
    assert repo.manifests == {MANIFEST.digest: OCI_MANIFEST}


def test_push_manifest_again_is_a_no_op() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST))
    repo.push_manifest(MANIFEST, CTX)
    assert then(repo) == []


@pytest.mark.parametrize(
    "missing", [CONFIG, LAYER1, LAYER2], ids=["config", "first layer", "second layer"]
)
def test_push_manifest_with_an_unlinked_blob(missing: Descriptor) -> None:
    present = [b for b in (CONFIG, LAYER1, LAYER2) if b != missing]
    repo = given_repo(linked(*present))
    with pytest.raises(ManifestBlobUnknown, match=missing.digest.hex):
        repo.push_manifest(MANIFEST, CTX)
    assert then(repo) == []
    assert repo.manifests == {}


def test_push_manifest_with_a_foreign_layer() -> None:
    foreign = blob(
        b"windows base layer",
        MediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
        urls=("https://mcr.microsoft.com/layer",),
    )
    repo = given_repo(linked(CONFIG, LAYER1))
    repo.push_manifest(image(CONFIG, foreign, LAYER1), CTX)
    assert [name for name, _ in then(repo)] == ["ManifestPushed"]


def test_push_artifact_whose_subject_does_not_exist() -> None:
    empty = blob(b"{}", OCI_EMPTY_CONFIG)
    subject = Descriptor(OCI_MANIFEST, Digest.of(b"not pushed yet"), 10)
    sbom = image(empty, LAYER1, subject=subject, artifact_type=MediaType("application/spdx+json"))
    repo = given_repo(linked(empty, LAYER1))
    repo.push_manifest(sbom, CTX)
    [(name, fields)] = then(repo)
    assert name == "ManifestPushed"
    assert fields["subject"] == subject
    assert fields["artifact_type"] == "application/spdx+json"


def test_push_index() -> None:
    other = image(CONFIG, LAYER1)
    idx = index(MANIFEST, other)
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST, other))
    repo.push_manifest(idx, CTX)
    [(name, fields)] = then(repo)
    assert name == "ManifestPushed"
    assert fields["manifests"] == idx.manifests
    assert fields["config"] is None and fields["layers"] == ()
    assert repo.manifests[idx.digest] == OCI_INDEX


def test_push_index_with_an_unknown_child() -> None:
    other = image(CONFIG, LAYER1)
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST))
    with pytest.raises(ManifestBlobUnknown, match=other.digest.hex):
        repo.push_manifest(index(MANIFEST, other), CTX)
    assert then(repo) == []


def test_delete_manifest_deletes_its_tags_first_in_tag_order() -> None:
    other = image(CONFIG, LAYER1)
    repo = given_repo(
        linked(CONFIG, LAYER1, LAYER2),
        pushed(MANIFEST, other),
        tagged("v2", MANIFEST),
        tagged("latest", MANIFEST),
        tagged("v1", other),
        tagged("A", MANIFEST),
    )
    repo.delete_manifest(MANIFEST.digest, CTX)
    assert then(repo) == [
        ("TagDeleted", {"tag": "A", "digest": MANIFEST.digest}),
        ("TagDeleted", {"tag": "latest", "digest": MANIFEST.digest}),
        ("TagDeleted", {"tag": "v2", "digest": MANIFEST.digest}),
        ("ManifestDeleted", {"digest": MANIFEST.digest}),
    ]
    assert repo.manifests == {other.digest: OCI_MANIFEST}
    assert repo.tags == {Tag("v1"): other.digest}
    assert set(repo.blobs) == {CONFIG.digest, LAYER1.digest, LAYER2.digest}


def test_delete_unknown_manifest() -> None:
    repo = given_repo()
    with pytest.raises(ManifestUnknown, match=MANIFEST.digest.hex):
        repo.delete_manifest(MANIFEST.digest, CTX)
    assert then(repo) == []


# Tags


def test_tag() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST))
    repo.tag(Tag("latest"), MANIFEST.digest, CTX)
    assert then(repo) == [
        ("TagMoved", {"tag": "latest", "from_digest": None, "to_digest": MANIFEST.digest})
    ]
    assert repo.tags == {Tag("latest"): MANIFEST.digest}


def test_move_tag() -> None:
    other = image(CONFIG, LAYER1)
    repo = given_repo(
        linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST, other), tagged("latest", MANIFEST)
    )
    repo.tag(Tag("latest"), other.digest, CTX)
    assert then(repo) == [
        (
            "TagMoved",
            {"tag": "latest", "from_digest": MANIFEST.digest, "to_digest": other.digest},
        )
    ]
    assert repo.tags == {Tag("latest"): other.digest}


def test_tag_where_it_already_is_is_a_no_op() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST), tagged("latest", MANIFEST))
    repo.tag(Tag("latest"), MANIFEST.digest, CTX)
    assert then(repo) == []


def test_tag_unknown_manifest() -> None:
    repo = given_repo()
    with pytest.raises(ManifestUnknown, match=MANIFEST.digest.hex):
        repo.tag(Tag("latest"), MANIFEST.digest, CTX)
    assert then(repo) == []
    assert repo.tags == {}


def test_untag() -> None:
    repo = given_repo(linked(CONFIG, LAYER1, LAYER2), pushed(MANIFEST), tagged("latest", MANIFEST))
    repo.untag(Tag("latest"), CTX)
    assert then(repo) == [("TagDeleted", {"tag": "latest", "digest": MANIFEST.digest})]
    assert repo.tags == {}
    assert MANIFEST.digest in repo.manifests


def test_untag_unknown_tag() -> None:
    repo = given_repo()
    with pytest.raises(TagUnknown, match="latest"):
        repo.untag(Tag("latest"), CTX)
    assert then(repo) == []


# Replay


def replay(events: Any) -> Repository:
    aggregate = reduce(lambda agg, e: e.mutate(agg), events, None)
    assert isinstance(aggregate, Repository)
    return aggregate


def test_version_counts_events() -> None:
    repo = Repository.create(NAME, CTX)
    linked(CONFIG, LAYER1, LAYER2)(repo)
    pushed(MANIFEST)(repo)
    tagged("a", MANIFEST)(repo)
    tagged("b", MANIFEST)(repo)
    repo.delete_manifest(MANIFEST.digest, CTX)
    assert repo.version == len(repo.pending_events) == 1 + 3 + 1 + 2 + 3


@settings(max_examples=50, deadline=None)
@given(repo=s.repositories(), data=st.data())
def test_state_after_replay_equals_state_before(repo: Repository, data: st.DataObject) -> None:
    # Then some deletions, so that every event kind is in the history.
    if repo.tags:
        for tag in data.draw(st.lists(st.sampled_from(sorted(repo.tags)), unique=True)):
            repo.untag(tag, ctx_from(data))
    if len(repo.manifests) > 0 and data.draw(st.booleans()):
        digest = data.draw(st.sampled_from(sorted(repo.manifests, key=str)))
        repo.delete_manifest(digest, ctx_from(data))
    if len(repo.blobs) > 0 and data.draw(st.booleans()):
        digest = data.draw(st.sampled_from(sorted(repo.blobs, key=str)))
        repo.unlink_blob(digest, ctx_from(data))

    events = list(repo.pending_events)
    replayed = replay(events)
    assert replayed.id == repo.id
    assert replayed.version == repo.version
    assert (replayed.name, replayed.blobs, replayed.manifests, replayed.tags) == (
        repo.name,
        repo.blobs,
        repo.manifests,
        repo.tags,
    )
    repo.collect_events()
    assert replayed == repo


def ctx_from(data: st.DataObject) -> EventContext:
    ctx: EventContext = data.draw(s.event_contexts())
    return ctx
