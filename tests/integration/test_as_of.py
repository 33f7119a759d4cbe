"""The registry as of a moment (``replay as-of``, ``serve --as-of``), on SQLite and
PostgreSQL: built from the log with a driven clock, it shows each moment's tags,
manifests, expiries, grants and audit log; it resumes, becomes final, refuses the
future, equals the live views when the moment is now, and is removed by ``drop``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cargohold.adapters.data_dir import DataDir
from cargohold.bootstrap import Container, StartupError, bootstrap
from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole
from cargohold.domain.ports import AccessRecord, Database
from cargohold.domain.values import Actor, ActorKind, RepositoryName, Tag
from cargohold.projections.audit.queries import LogFilter
from cargohold.projections.schema import VIEW_TABLES
from cargohold.replay import as_of
from tests.factories import ALICE, ManualClock, push_image, settings_for

APP = RepositoryName("acme/app")
OTHER = RepositoryName("other/repo")
V1 = Tag("v1")
T0 = 1_700_000_000_000
BOB = Principal(PrincipalKind.USER, "bob")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings_of(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Any:
    def make(**extra: Any) -> Any:
        return settings_for(request, backend, tmp_path / "data", snapshot_interval=5, **extra)

    return make


@pytest.fixture
def container(settings_of: Any, clock: ManualClock) -> Iterator[Container]:
    c = bootstrap(settings_of(), wall_ms=clock)
    try:
        yield c
    finally:
        c.close()


def _at(ms: int) -> str:
    return f"@{ms / 1000:.3f}"


def _past(settings_of: Any, clock: ManualClock, ms: int, **kwargs: Any) -> Container:
    return bootstrap(settings_of(as_of=_at(ms)), wall_ms=clock, **kwargs)


def _history(container: Container, clock: ManualClock) -> dict[str, Any]:
    """Four moments of a registry; what each should show."""
    first = push_image(container, "acme/app", "v1", seed="a")
    container.access_log.record(
        AccessRecord(
            "pull_repo", _dt(clock.ms + 10), Actor(ActorKind.USER, "alice"), "acme", "acme/app"
        )
    )
    clock.ms += 1000  # T0 + 1000
    second = push_image(container, "acme/app", "v1", seed="b")
    push_image(container, "other/repo", "latest", seed="c")
    container.registry.grant(APP, BOB, RepositoryRole.WRITE, ALICE)
    container.access_log.record(
        AccessRecord(
            "pull_repo", _dt(clock.ms + 10), Actor(ActorKind.USER, "bob"), "acme", "acme/app"
        )
    )
    clock.ms += 1000  # T0 + 2000
    container.registry.untag(APP, V1, ALICE)
    container.registry.revoke(APP, BOB, ALICE)
    container.registry.set_tag_expiration(OTHER, Tag("latest"), _dt(T0 + 2500), ALICE)
    clock.ms += 1000  # T0 + 3000
    container.registry.delete_repository(OTHER, ALICE)
    container.access_log.flush()
    return {"first": first, "second": second}


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_each_moment_shows_the_registry_as_it_stood_then(
    container: Container, settings_of: Any, clock: ManualClock
) -> None:
    images = _history(container, clock)
    clock.ms += 60_000
    expected: list[tuple[int, list[str], Any, list[str], int]] = [
        # moment, catalog, acme/app:v1, bob's grants, pulls
        (T0 - 1, [], None, [], 0),
        (T0 + 500, ["acme/app"], images["first"].digest, [], 1),
        (T0 + 1500, ["acme/app", "other/repo"], images["second"].digest, ["acme/app"], 2),
        (T0 + 2200, ["acme/app", "other/repo"], None, [], 2),
        (T0 + 3500, ["acme/app"], None, [], 2),
    ]
    for moment, catalog, v1, grants, pulls in expected:
        past = _past(settings_of, clock, moment)
        try:
            assert past.read_only and past.as_of is not None
            # final: a later event exists (the last moment is past the last event)
            assert past.as_of.final is (moment < T0 + 3000)
            assert past.queries.catalog() == catalog, moment
            if catalog:
                assert past.queries.resolve_tag(APP, V1) == v1, moment
            assert [r for r, _ in past.identity_queries.grants_of(BOB)] == grants, moment
            entries = list(
                past.audit_queries.iterate(LogFilter(0, 2**62, kinds=frozenset({"pull_repo"})))
            )
            assert len(entries) == pulls, moment
            # the live registry is untouched
            assert container.queries.catalog() == ["acme/app"]
        finally:
            past.close()
    # other/repo's tag expired at T0 + 2500: hidden from T0 + 2500 on, by that clock
    before = _past(settings_of, clock, T0 + 2400)
    after = _past(settings_of, clock, T0 + 2600)
    try:
        assert before.queries.tags(OTHER) == ["latest"]
        assert after.queries.tags(OTHER) == []
    finally:
        before.close()
        after.close()


def test_the_moment_now_equals_the_live_views(
    container: Container, settings_of: Any, clock: ManualClock
) -> None:
    _history(container, clock)
    past = _past(settings_of, clock, clock.ms)
    try:
        assert past.as_of is not None and not past.as_of.final
        assert past.as_of.position == container.runner.position()
        assert past.as_of_db is not None
        for table in VIEW_TABLES:
            assert _rows(past.as_of_db, table.name) == _rows(container.views_db, table.name), (
                table.name
            )
    finally:
        past.close()


def _rows(db: Database, table: str) -> list[tuple[Any, ...]]:
    return sorted(db.query(f"SELECT * FROM {table}"), key=repr)


def test_a_build_resumes_and_a_later_event_makes_it_final(
    container: Container, settings_of: Any, clock: ManualClock
) -> None:
    push_image(container, "acme/app", "v1", seed="a")
    moment = clock.ms
    past = _past(settings_of, clock, moment)
    try:
        assert past.as_of is not None and not past.as_of.final
        position = past.as_of.position
    finally:
        past.close()
    # an event stamped at the very moment still belongs to it...
    push_image(container, "acme/app", "v2", seed="b")
    # ...one stamped later does not, and closes the moment for good
    clock.ms += 1
    push_image(container, "acme/app", "v3", seed="c")
    past = _past(settings_of, clock, moment)
    try:
        assert past.as_of is not None and past.as_of.final
        assert past.as_of.position > position
        assert past.queries.tags(APP) == ["v1", "v2"]
    finally:
        past.close()


def test_the_future_and_unclear_moments_are_refused(
    container: Container, settings_of: Any, clock: ManualClock
) -> None:
    with pytest.raises(StartupError, match="in the future"):
        _past(settings_of, clock, clock.ms + 1000)
    from cargohold.config import ConfigError

    with pytest.raises(ConfigError, match="not a moment"):
        settings_of(as_of="last tuesday")


def test_workers_open_the_build_of_their_parent_and_drop_removes_it(
    container: Container, settings_of: Any, clock: ManualClock
) -> None:
    push_image(container, "acme/app", "v1", seed="a")
    clock.ms += 1000
    push_image(container, "acme/app", "v2", seed="b")
    parent = _past(settings_of, clock, T0 + 500)
    worker = bootstrap(settings_of(as_of=_at(T0 + 500)), wall_ms=clock, create_tables=False)
    try:
        assert worker.as_of == parent.as_of
        assert worker.queries.tags(APP) == ["v1"]
    finally:
        worker.close()
        parent.close()
    settings = DataDir(settings_of().data_dir)
    assert as_of.drop(settings, container.views_db, T0 + 500) is True
    assert as_of.drop(settings, container.views_db, T0 + 500) is False


def test_the_cli_builds_reports_and_drops(
    container: Container, settings_of: Any, clock: ManualClock, backend: str
) -> None:
    push_image(container, "acme/app", "v1", seed="a")
    settings = settings_of()
    args = ["--data-dir", str(settings.data_dir), "--quiet"]
    if backend == "postgres":
        args += ["--database", settings.database]
    moment = "2023-11-14T22:13:21Z"  # T0 + 1 s: after the push (clock at T0)

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cargohold.cli", "replay", "as-of", *extra, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    built = run(moment)
    assert built.returncode == 0, built.stderr
    assert "views as of 2023-11-14T22:13:21.000Z: the log up to position" in built.stdout
    assert f"position {container.runner.position()} " in built.stdout
    assert "serve them with: cargohold serve --as-of 2023-11-14T22:13:21.000Z" in built.stdout
    unclear = run("yesterday")
    assert unclear.returncode == 2 and "not a moment" in unclear.stderr
    future = run("2999-01-01")
    assert future.returncode == 2 and "in the future" in future.stderr
    dropped = run(moment, "--drop")
    assert dropped.returncode == 0 and dropped.stdout.startswith("removed views as of")
