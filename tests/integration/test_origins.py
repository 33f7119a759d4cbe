"""Which names belong to other sites (``projections/origins.py``), on SQLite and
PostgreSQL: the answers; and, on SQLite, that the check before every write does not grow
with the number of this site's repositories (it once read each of them: 3.8 ms per check
in a namespace of 10,000)."""

from __future__ import annotations

import uuid

import pytest

from cargohold.bootstrap import Container
from cargohold.domain.values import RepositoryName
from cargohold.projections.origins import StreamOrigins
from tests.factories import sqlite_steps

# NOTE: site ids sort on both sides of any local id, so both seeks are exercised.
LOW_SITE = uuid.UUID("00000000-0000-4000-8000-000000000001")
HIGH_SITE = uuid.UUID("ffffffff-ffff-4fff-bfff-fffffffffff1")


def _add(container: Container, rows: list[tuple[str, str, uuid.UUID, int]]) -> None:
    with container.views_db.transaction() as c:
        c.executemany(
            "INSERT INTO stream_origins (id, kind, name, site_id, position) VALUES (?, ?, ?, ?, ?)",
            [(str(uuid.uuid4()), kind, name, str(site), pos) for kind, name, site, pos in rows],
        )


def _local_repositories(container: Container, namespace: str, count: int, start: int) -> None:
    _add(
        container,
        [
            ("repository", f"{namespace}/r{i:05d}", container.site_id, start + i)
            for i in range(count)
        ],
    )


def _origins_in(container: Container) -> StreamOrigins:
    _add(
        container,
        [
            ("repository", "shared/imported", HIGH_SITE, 10_001),
            ("namespace", "partner", LOW_SITE, 10_002),
            ("repository", "loose/app", LOW_SITE, 10_003),
            ("account", "alice", HIGH_SITE, 10_004),
            ("repository", "loose/app", HIGH_SITE, 10_000),  # earlier: it wins
        ],
    )
    _local_repositories(container, "shared", 50, 20_000)
    return StreamOrigins(container.views_db, container.site_id)


@pytest.fixture
def origins(container: Container) -> StreamOrigins:
    return _origins_in(container)


def test_foreign_names_are_found_and_local_ones_are_not(origins: StreamOrigins) -> None:
    name = RepositoryName.parse
    assert origins.repository_origin(name("shared/imported")) == HIGH_SITE
    assert origins.repository_origin(name("partner/anything")) == LOW_SITE  # its namespace
    # a repository in a namespace nobody here owns, where another site has repositories
    assert origins.repository_origin(name("loose/other")) == HIGH_SITE
    assert origins.namespace_origin("partner") == LOW_SITE
    assert origins.namespace_origin("loose") == HIGH_SITE
    assert origins.foreign_account("alice") is not None
    # this site's own, beside foreign ones, and names that exist nowhere
    assert origins.repository_origin(name("shared/r00007")) == HIGH_SITE  # shared has one
    assert origins.repository_origin(name("mine/r00001")) is None
    assert origins.namespace_origin("mine") is None
    assert origins.foreign_account("bob") is None
    # "loose0" sorts right after "loose/": not in the namespace
    assert origins.namespace_origin("loose0") is None


def test_without_foreign_streams_nothing_is_foreign(container: Container) -> None:
    _local_repositories(container, "solo", 20, 1)
    origins = StreamOrigins(container.views_db, container.site_id)
    assert origins.repository_origin(RepositoryName.parse("solo/r00003")) is None
    assert origins.namespace_origin("solo") is None


def test_the_check_does_not_read_this_sites_repositories(
    sqlite_container: Container,
) -> None:
    origins = _origins_in(sqlite_container)
    steps, counting = sqlite_steps(sqlite_container)

    def cost() -> int:
        before = steps()
        counting(True)
        try:
            assert origins.repository_origin(RepositoryName.parse("busy/app")) is None
        finally:
            counting(False)
        return steps() - before

    _local_repositories(sqlite_container, "busy", 10, 30_000)
    few = cost()
    _local_repositories(sqlite_container, "busy", 5_000, 40_000)
    many = cost()
    assert many == few, (few, many)  # the old OR query read all 5,010 rows: ~50,000 steps
