"""Cross-repository mounts of a blob that many repositories hold (a common base layer),
on SQLite and PostgreSQL: the answers, and on SQLite that a mount with ``from`` costs the
same whether 10 or 1,000 repositories hold the blob (it once read all of them: loading
10,000 repositories that mount one base image slowed to 16 a second)."""

from __future__ import annotations

import io

from cargohold.bootstrap import Container
from cargohold.commands.uploads import MOUNT_PAGE
from cargohold.domain.values import Digest, RepositoryName
from tests.factories import ALICE, sqlite_steps

name = RepositoryName.parse


def _linked_into(container: Container, count: int, start: int = 0) -> Digest:
    digest, _ = container.blobs.put(io.BytesIO(b"a base layer"))
    for i in range(start, start + count):
        container.registry.link_blob(name(f"base/r{i:05d}"), digest, ALICE)
    return digest


def test_a_mount_without_from_pages_to_a_readable_repository(container: Container) -> None:
    digest = _linked_into(container, MOUNT_PAGE + 30)
    last = f"base/r{MOUNT_PAGE + 29:05d}"  # on the second page, in name order
    asked: list[str] = []

    def only_the_last(repository: RepositoryName) -> bool:
        asked.append(str(repository))
        return str(repository) == last

    assert container.uploads.mount(name("mine/app"), digest, None, ALICE, only_the_last)
    assert container.queries.blob_size(name("mine/app"), digest) == len(b"a base layer")
    assert len(asked) == MOUNT_PAGE + 30 and asked == sorted(asked)  # each once, in order
    # nothing readable: no mount, and nothing linked
    assert not container.uploads.mount(name("mine/other"), digest, None, ALICE, lambda _: False)
    assert container.queries.blob_size(name("mine/other"), digest) is None


def test_a_mount_from_a_source_asks_that_source_only(container: Container) -> None:
    digest = _linked_into(container, 5)
    source = name("base/r00003")
    assert container.uploads.mount(name("mine/a"), digest, source, ALICE)
    # a source that does not hold the blob, or that the caller may not read
    assert not container.uploads.mount(name("mine/b"), digest, name("base/none"), ALICE)
    assert not container.uploads.mount(name("mine/c"), digest, source, ALICE, lambda _: False)
    assert container.queries.blob_size(name("mine/b"), digest) is None
    assert container.queries.blob_size(name("mine/c"), digest) is None


def test_a_mount_costs_the_same_however_many_repositories_hold_the_blob(
    sqlite_container: Container,
) -> None:
    steps, counting = sqlite_steps(sqlite_container)

    def cost(target: str) -> int:
        before = steps()
        counting(True)
        try:
            assert sqlite_container.uploads.mount(name(target), digest, name("base/r00004"), ALICE)
        finally:
            counting(False)
        return steps() - before

    digest = _linked_into(sqlite_container, 10)
    few = cost("mine/few")
    _linked_into(sqlite_container, 1_000, start=10)
    many = cost("mine/many")
    # the mount's reads, its link command and the views catching up with it: the same
    # work either way (reading the 1,010 holders instead would be ~10,000 steps more)
    assert abs(many - few) < few // 10, (few, many)
