"""Version conflicts are retried with backoff until a time budget, then reported."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from cargohold.bootstrap import Container, bootstrap
from cargohold.commands.unit_of_work import RetryPolicy
from cargohold.config import load_settings
from cargohold.domain.errors import ConcurrentModification
from cargohold.domain.values import RepositoryName
from tests.factories import ALICE


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = bootstrap(load_settings(environ={}, overrides={"data_dir": tmp_path / "d"}))
    yield c
    c.close()


def _conflicting(container: Container, conflicts: int) -> list[int]:
    """Make the next ``conflicts`` saves lose a race; count every save attempt."""
    real_save = container.log.save
    calls = [0]

    def save(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= conflicts:
            raise IntegrityError("simulated version conflict")
        return real_save(*args, **kwargs)

    container.log.save = save  # type: ignore[method-assign]
    return calls


def test_conflicts_are_retried_with_growing_jittered_backoff(container: Container) -> None:
    clock = FakeTime()
    container.registry.unit.retry = RetryPolicy(
        budget=10, sleep=clock.sleep, jitter=lambda: 1.0, monotonic=clock.monotonic
    )
    calls = _conflicting(container, conflicts=7)
    digest, _ = container.blobs.put(io.BytesIO(b"blob"))
    container.registry.link_blob(RepositoryName("a/b"), digest, ALICE)
    assert calls[0] == 8
    assert clock.sleeps == [0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]
    assert container.queries.blob_size(RepositoryName("a/b"), digest) == 4


def test_the_budget_ends_in_a_clear_error(container: Container) -> None:
    clock = FakeTime()
    container.registry.unit.retry = RetryPolicy(
        budget=1, sleep=clock.sleep, jitter=lambda: 1.0, monotonic=clock.monotonic
    )
    _conflicting(container, conflicts=10**6)
    digest, _ = container.blobs.put(io.BytesIO(b"blob"))
    with pytest.raises(ConcurrentModification, match="too busy"):
        container.registry.link_blob(RepositoryName("a/b"), digest, ALICE)
    assert 1.0 <= clock.now < 1.1
    assert container.queries.catalog() == []
