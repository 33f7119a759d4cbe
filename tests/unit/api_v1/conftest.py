"""Fixtures of the /api/v1 tests: a container on the embedded default and its client.

A module that needs content before its tests overrides ``container``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from tests.unit.api_v1.support import make_client, make_container


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = make_container(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return make_client(container)
