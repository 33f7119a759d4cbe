from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cargohold.bootstrap import Container, bootstrap
from tests.factories import settings_for

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def _opened(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Container]:
    c = bootstrap(settings_for(request, backend, tmp_path / "data", snapshot_interval=5))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def sqlite_container(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    """The embedded default only: for tests of SQLite itself (its VM's step counts)."""
    with _opened(request, "sqlite", tmp_path) as c:
        yield c


@pytest.fixture
def container(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Container]:
    with _opened(request, backend, tmp_path) as c:
        yield c
