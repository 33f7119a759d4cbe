"""Commands against the real log and views, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest

from cargohold.adapters.eventstore import LogReader
from cargohold.bootstrap import Container, open_views_database
from cargohold.domain.errors import ManifestBlobUnknown, NameInvalid, TagUnknown
from cargohold.domain.ports import Cursor
from cargohold.domain.repository import Repository
from cargohold.domain.values import Digest, RepositoryName, Tag
from cargohold.projections.projector import RegistryProjector
from cargohold.projections.runner import ProjectionRunner
from tests.factories import ALICE, OCI_MANIFEST, push_image
from tests.operations import verify

NAME = RepositoryName("acme/app")


def test_a_push_is_visible_in_every_view_when_the_command_returns(container: Container) -> None:
    image = push_image(container, "acme/app", "v1")
    q = container.queries
    assert q.tags(NAME) == ["v1"]
    assert q.resolve_tag(NAME, Tag("v1")) == image.digest
    row = q.manifest(NAME, image.digest)
    assert row is not None and row.media_type == OCI_MANIFEST and row.size == len(image.manifest)
    assert row.config_digest == str(image.config)
    assert q.blob_size(NAME, image.layers[0]) is not None
    assert q.catalog() == ["acme/app"]
    assert container.runner.position() == LogReader(container.log).head()


def test_tag_history_keeps_every_move_and_delete(container: Container) -> None:
    first = push_image(container, "acme/app", "v1", seed="a")
    second = push_image(container, "acme/app", "v1", seed="b")
    container.registry.untag(NAME, Tag("v1"), ALICE)
    history = container.queries.tag_history(NAME, Tag("v1"))
    assert [(h.action, h.from_digest, h.to_digest) for h in history] == [
        ("move", None, str(first.digest)),
        ("move", str(first.digest), str(second.digest)),
        ("delete", str(second.digest), None),
    ]
    assert all(h.actor == "user:alice" for h in history)
    assert container.queries.tags(NAME) == []
    with pytest.raises(TagUnknown):
        container.registry.untag(NAME, Tag("v1"), ALICE)


def test_referrers_follow_the_subject_and_filter_by_artifact_type(container: Container) -> None:
    image = push_image(container, "acme/app", "v1")
    sbom = push_image(
        container,
        "acme/app",
        None,
        seed="sbom",
        subject=image.digest,
        subject_size=len(image.manifest),
        artifact_type="application/spdx+json",
        annotations={"org.example": "yes"},
    )
    sig = push_image(
        container,
        "acme/app",
        None,
        seed="sig",
        subject=image.digest,
        subject_size=len(image.manifest),
        artifact_type="application/vnd.dev.cosign+json",
    )
    q = container.queries
    everything = q.referrers(NAME, image.digest)
    assert {r.digest for r in everything} == {str(sbom.digest), str(sig.digest)}
    only_sbom = q.referrers(NAME, image.digest, "application/spdx+json")
    assert [(r.digest, r.annotations) for r in only_sbom] == [
        (str(sbom.digest), {"org.example": "yes"})
    ]
    container.registry.delete_manifest(NAME, sbom.digest, ALICE)
    assert [r.digest for r in q.referrers(NAME, image.digest)] == [str(sig.digest)]


def test_deleting_a_manifest_untags_it(container: Container) -> None:
    image = push_image(container, "acme/app", "v1")
    container.registry.tag(NAME, Tag("stable"), image.digest, ALICE)
    container.registry.delete_manifest(NAME, image.digest, ALICE)
    q = container.queries
    assert q.manifest(NAME, image.digest) is None
    assert q.tags(NAME) == []
    assert [h.action for h in q.tag_history(NAME)] == ["move", "move", "delete", "delete"]


def test_tag_and_catalog_paging(container: Container) -> None:
    image = push_image(container, "acme/app", "t00")
    for i in range(1, 12):
        container.registry.tag(NAME, Tag(f"t{i:02d}"), image.digest, ALICE)
    for name in ("a/one", "b/two", "c/three"):
        push_image(container, name, "x")
    q = container.queries
    assert q.tags(NAME, n=5) == ["t00", "t01", "t02", "t03", "t04"]
    assert q.tags(NAME, n=5, last="t09") == ["t10", "t11"]
    assert q.catalog(n=2) == ["a/one", "acme/app"]
    assert q.catalog(n=2, last="acme/app") == ["b/two", "c/three"]


def test_rejected_commands_write_nothing(container: Container) -> None:
    head = LogReader(container.log).head()
    layer, _ = container.blobs.put(io.BytesIO(b"never linked"))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": str(layer),
                "size": 12,
            },
            "layers": [],
        }
    ).encode()
    with pytest.raises(ManifestBlobUnknown):
        container.registry.push_manifest(NAME, Tag("v1"), manifest, OCI_MANIFEST, ALICE)
    with pytest.raises(NameInvalid):
        container.registry.push_manifest(
            RepositoryName("Bad/Name"), Tag("v1"), manifest, OCI_MANIFEST, ALICE
        )
    assert LogReader(container.log).head() == head
    assert container.queries.catalog() == []


def test_concurrent_pushes_to_one_tag_all_land(container: Container) -> None:
    push_image(container, "acme/app", "base")  # the repository exists before the race
    results: list[Any] = []
    errors: list[BaseException] = []

    def push(i: int) -> None:
        try:
            results.append(push_image(container, "acme/app", "latest", seed=f"c{i}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    q = container.queries
    for image in results:
        assert q.manifest(NAME, image.digest) is not None
    moves = [h for h in q.tag_history(NAME, Tag("latest")) if h.action == "move"]
    assert len(moves) == 8
    assert q.resolve_tag(NAME, Tag("latest")) == Digest.parse(moves[-1].to_digest or "")
    assert verify(container, quiet=True).differences == ()


class _FailingProjector(RegistryProjector):
    """Applies events normally until the given position, then raises mid-batch."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def apply(self, c: Cursor, ns: str, event: Any, position: int, counts: Any = None) -> None:
        if position == self.fail_at:
            raise RuntimeError("simulated crash")
        super().apply(c, ns, event, position, counts)


def _save_without_projecting(container: Container, name: str, tags: int) -> None:
    """Write events to the log the way a process that died before projecting would."""
    image = push_image(container, name, "seed")
    repo: Repository = container.log.repository.get(
        Repository.create_id(container.site_id, RepositoryName(name))
    )
    from cargohold.domain.context import EventContext

    for i in range(tags):
        ctx = EventContext(ALICE.actor, container.site_id, container.registry.clock.now(), "r")
        repo.tag(Tag(f"x{i}"), image.digest, ctx)
    container.log.save(repo)


def test_a_crash_mid_batch_leaves_views_and_position_untouched(container: Container) -> None:
    _save_without_projecting(container, "acme/app", tags=6)
    before_position = container.runner.position()
    before_tags = container.queries.tags(NAME)
    head = LogReader(container.log).head()
    broken = ProjectionRunner(
        container.views_db, LogReader(container.log), _FailingProjector(fail_at=head - 2)
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        broken.catch_up()
    assert container.runner.position() == before_position
    assert container.queries.tags(NAME) == before_tags  # nothing of the batch applied
    container.runner.catch_up()
    assert container.runner.position() == head
    assert len(container.queries.tags(NAME)) == 7
    assert verify(container, quiet=True).differences == ()


def test_runners_racing_on_one_database_apply_each_event_once(container: Container) -> None:
    _save_without_projecting(container, "acme/app", tags=40)
    runners = [
        ProjectionRunner(
            open_views_database(container.settings), LogReader(container.log), batch_size=3
        )
        for _ in range(3)
    ]
    threads = [threading.Thread(target=r.catch_up) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in runners:
        r.db.close()
    assert container.runner.position() == LogReader(container.log).head()
    assert len(container.queries.tags(NAME)) == 41
    assert verify(container, quiet=True).differences == ()


def test_snapshots_are_taken_and_loading_still_sees_every_tag(container: Container) -> None:
    image = push_image(container, "acme/app", "t0")
    for i in range(1, 23):
        container.registry.tag(NAME, Tag(f"t{i}"), image.digest, ALICE)
    repo_id = Repository.create_id(container.site_id, NAME)
    assert container.log.snapshots is not None
    assert list(container.log.snapshots.get(repo_id, desc=True, limit=1)) != []
    repo: Repository = container.log.repository.get(repo_id)
    assert len(repo.tags) == 23
