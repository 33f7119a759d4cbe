"""The tag time machine against the real log and views, on SQLite and PostgreSQL:
lifetimes, restores, expirations and expiry, namespace windows, and a replay that
rebuilds the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cargohold.bootstrap import Container, bootstrap
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.identity import AccountName
from cargohold.domain.values import Actor, RepositoryName, Tag
from tests.factories import ALICE, ManualClock, push_image, settings_for
from tests.operations import sweep_expired_tags, verify

NAME = RepositoryName("acme/app")
LATEST = Tag("latest")
T0 = 1_700_000_000_000
DAY_MS = 86_400_000
SYSTEM = Caller(Actor.system(), "test")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def container(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: ManualClock
) -> Iterator[Container]:
    c = bootstrap(
        settings_for(request, backend, tmp_path / "data", snapshot_interval=5), wall_ms=clock
    )
    try:
        yield c
    finally:
        c.close()


def test_lifetimes_follow_moves_restores_expiry_and_replay_rebuilds_them(
    container: Container, clock: ManualClock
) -> None:
    first = push_image(container, "acme/app", "latest", seed="a")
    clock.ms += 1000
    second = push_image(container, "acme/app", "latest", seed="b")
    clock.ms += 1000
    container.registry.restore_tag(NAME, LATEST, first.digest, ALICE)
    clock.ms += 1000
    expires = datetime.fromtimestamp((T0 + DAY_MS) / 1000, tz=UTC)
    container.registry.set_tag_expiration(NAME, LATEST, expires, ALICE)

    q = container.queries
    rows, more = q.tag_lifetimes(NAME)
    assert not more
    assert [(r.digest, r.start_ms, r.end_ms, r.reversion) for r in rows] == [
        (first.digest, T0 + 2000, T0 + DAY_MS, True),  # live, ends at its expiration
        (second.digest, T0 + 1000, T0 + 2000, False),
        (first.digest, T0, T0 + 1000, False),
    ]
    assert rows[0].size == len(b"layer a ") * 64  # the layers, not the manifest
    assert q.resolve_tag(NAME, LATEST) == first.digest

    clock.ms = T0 + DAY_MS
    assert q.resolve_tag(NAME, LATEST) is None
    assert q.tags(NAME) == [] and q.current_tags(NAME, 10) == []
    assert q.tag_lifetimes(NAME, only_active=True) == ([], False)
    assert q.repositories_with_due_expirations() == [NAME]
    assert sweep_expired_tags(container) == 1
    assert q.repositories_with_due_expirations() == []
    assert [h.action for h in q.tag_history(NAME, LATEST)] == ["move", "move", "restore", "expire"]

    assert verify(container, quiet=True).differences == ()


def test_namespace_windows_are_in_the_views(container: Container) -> None:
    container.identity.create_user(AccountName("alice"), "", "alice-pw-12", SYSTEM)
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    assert container.tag_windows.seconds("acme") == 14 * 86400
    container.identity.set_org_tag_expiration_window(AccountName("acme"), 0, SYSTEM)
    container.identity.set_user_tag_expiration_window(AccountName("alice"), 86400, SYSTEM)
    assert container.queries.tag_expiration_window("acme") == 0
    assert container.tag_windows.seconds("alice") == 86400
    assert verify(container, quiet=True).differences == ()


def test_a_repository_deleted_loses_its_lifetimes(container: Container) -> None:
    push_image(container, "acme/app", "latest")
    container.registry.delete_repository(NAME, ALICE)
    assert container.queries.tag_lifetimes(NAME) == ([], False)
    assert verify(container, quiet=True).differences == ()


def test_a_replay_in_big_batches_writes_the_rows_of_one_event_per_transaction(
    container: Container, clock: ManualClock, tmp_path: Path
) -> None:
    """The rebuild's batching (a lifetime ended in its queued row, or its end sent before
    the batch's inserts; manifest sizes remembered; flushes around deletions) against
    the same projector applying one event per transaction, over every lifetime writer:
    moves of one tag again and again, a delete then a new move of it, restores,
    expirations set and expired, a manifest deleted, a repository deleted and recreated."""
    from cargohold.adapters.eventstore import LogReader
    from cargohold.adapters.sqlite import SQLiteDatabase
    from cargohold.projections.runner import ProjectionRunner
    from cargohold.projections.schema import VIEW_TABLES
    from tests.operations import rebuild

    images = [push_image(container, "acme/app", "latest", seed=f"s{i}") for i in range(4)]
    for i in range(6):
        clock.ms += 1000
        container.registry.tag(NAME, LATEST, images[i % 4].digest, ALICE)
        container.registry.tag(NAME, Tag(f"v{i % 3}"), images[(i + 1) % 4].digest, ALICE)
    container.registry.untag(NAME, Tag("v1"), ALICE)
    container.registry.tag(NAME, Tag("v1"), images[2].digest, ALICE)
    container.registry.restore_tag(NAME, LATEST, images[0].digest, ALICE)
    container.registry.untag(NAME, Tag("v2"), ALICE)
    container.registry.delete_manifest(NAME, images[3].digest, ALICE)
    expires = datetime.fromtimestamp((clock.ms + 5000) / 1000, tz=UTC)
    container.registry.set_tag_expiration(NAME, Tag("v0"), expires, ALICE)
    clock.ms += 10_000
    assert sweep_expired_tags(container) == 1
    container.registry.tag(NAME, Tag("v0"), images[1].digest, ALICE)
    push_image(container, "acme/other", "latest", seed="o")
    container.registry.delete_repository(RepositoryName("acme/other"), ALICE)
    again = push_image(container, "acme/other", "latest", seed="p")
    container.registry.tag(RepositoryName("acme/other"), Tag("x"), again.digest, ALICE)

    rebuild(container, quiet=True)  # one batch holds the whole log
    one_db = SQLiteDatabase(tmp_path / "one-by-one.sqlite")
    try:
        one = ProjectionRunner(one_db, LogReader(container.log), batch_size=1)
        one.create_tables()
        assert one.catch_up() == container.runner.position()
        for table in VIEW_TABLES:
            sql = f"SELECT {', '.join(table.column_names)} FROM {table.name}"
            rebuilt = sorted(container.views_db.query(sql), key=repr)
            assert rebuilt == sorted(one_db.query(sql), key=repr), table.name
        lifetimes = one_db.query("SELECT count(*), count(end_ms) FROM tag_lifetimes")
        assert lifetimes[0][0] > lifetimes[0][1] > 10  # ended ones and live ones
    finally:
        one_db.close()
