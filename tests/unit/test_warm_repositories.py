"""Repositories kept between commands are never staler than the log (issue 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.bootstrap import Container, bootstrap
from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import UnitOfWork
from cargohold.config import load_settings
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.errors import TagUnknown
from cargohold.domain.repository import Repository
from cargohold.domain.values import RepositoryName, Tag
from tests.factories import ALICE, push_image

NAME = RepositoryName("acme/app")


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = bootstrap(load_settings(environ={}, overrides={"data_dir": tmp_path / "d"}))
    yield c
    c.close()


def _other_process(c: Container) -> RegistryService:
    """A second writer on the same log, with a cache of its own (as another worker)."""
    r = c.registry
    return RegistryService(UnitOfWork(c.log, c.runner, r.clock, c.site_id), c.blobs)


def test_a_cached_repository_sees_what_another_writer_saved(container: Container) -> None:
    image = push_image(container, str(NAME), "v1")
    assert len(container.registry.warm) == 1  # kept after its save
    other = _other_process(container)
    other.tag(NAME, Tag("v2"), image.digest, ALICE)
    # Our cached copy predates v2: untagging it must fast-forward, not fail or skip.
    container.registry.untag(NAME, Tag("v2"), ALICE)
    assert container.queries.resolve_tag(NAME, Tag("v2")) is None
    with pytest.raises(TagUnknown):
        other.untag(NAME, Tag("v2"), ALICE)  # the other writer's cache catches up too


def test_a_failed_command_does_not_leave_its_aggregate_cached(container: Container) -> None:
    push_image(container, str(NAME), "v1")
    warm = container.registry.warm
    with pytest.raises(TagUnknown):
        container.registry.untag(NAME, Tag("nope"), ALICE)
    assert len(warm) == 0
    container.registry.untag(NAME, Tag("v1"), ALICE)  # loads afresh
    repo_id = Repository.create_id(container.site_id, NAME)
    assert warm.load(repo_id).tags == {}


def test_a_version_conflict_reloads_and_keeps_both_commands(container: Container) -> None:
    image = push_image(container, str(NAME), "v1")
    repo_id = Repository.create_id(container.site_id, NAME)
    stale: Repository = container.log.repository.get(repo_id)
    other = _other_process(container)
    other.tag(NAME, Tag("v2"), image.digest, ALICE)
    # Hand the command a copy that is behind the log (as a cache would that skipped
    # its fast-forward): the save conflicts on the primary key, and the retry loads
    # afresh, so neither write is lost.
    original_load = container.registry.warm.load
    calls: list[int] = []

    def load_without_fastforward(aggregate_id: object) -> Repository:
        calls.append(1)
        if len(calls) == 1:
            return stale
        return original_load(repo_id)

    container.registry.warm.load = load_without_fastforward  # type: ignore[method-assign]
    container.registry.tag(NAME, Tag("v3"), image.digest, ALICE)
    assert len(calls) == 2  # conflict, then a fresh load
    tags = container.queries.tags(NAME)
    assert {"v1", "v2", "v3"} <= set(tags)


def test_retagging_a_known_manifest_does_not_rewrite_its_body(container: Container) -> None:
    image = push_image(container, str(NAME), "v1")
    puts: list[object] = []
    blobs = container.registry.blobs
    original_put = blobs.put

    def counting_put(*args: object, **kwargs: object) -> object:
        puts.append(args)
        return original_put(*args, **kwargs)  # type: ignore[arg-type]

    blobs.put = counting_put  # type: ignore[method-assign]
    container.registry.push_manifest(NAME, Tag("v2"), image.manifest, None, ALICE)
    assert puts == []
    assert container.queries.resolve_tag(NAME, Tag("v2")) == image.digest


def test_a_writer_whose_clock_is_behind_still_stamps_after_the_stream(
    container: Container,
) -> None:
    """Another worker or node whose clock lags writes the same repository: its event is
    stamped after the stream's last one, so a stream's stamps rise with its versions (the
    order geo-replication merges by)."""
    push_image(container, str(NAME), "v1")
    repo_id = Repository.create_id(container.site_id, NAME)
    ahead = container.registry.warm.load(repo_id).last_hlc
    behind = HybridLogicalClock(lambda: ahead.wall_ms - 5_000)
    other = RegistryService(
        UnitOfWork(container.log, container.runner, behind, container.site_id), container.blobs
    )
    image = push_image(container, str(NAME), "v2")
    other.tag(NAME, Tag("v3"), image.digest, ALICE)
    events = list(container.log.repository.event_store.get(repo_id))
    stamps = [e.hlc for e in events]  # the events of one command share its stamp
    assert stamps == sorted(stamps)
    assert isinstance(events[-1], Repository.TagMoved) and stamps[-1] > max(stamps[:-1])
