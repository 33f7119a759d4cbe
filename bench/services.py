"""PostgreSQL and MinIO for the cargohold-on-PostgreSQL+S3 column, started as the tests
start them.

The test suite's session fixtures (``tests/fixtures/postgres.py``,
``tests/fixtures/minio.py``) already know how to run both on free loopback ports with
throwaway data dirs (PostgreSQL as the ``postgres`` user when run as root, with fsync off);
these context managers run the same generator functions outside pytest. A missing binary
or system user, which the fixtures report with ``pytest.skip``/``pytest.fail``, becomes a
``BenchError`` saying what to install: the harness never skips a column it was asked for.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench.servers import BenchError

T = TypeVar("T")
# NOTE: imported by name, so that mypy (which checks bench/, not tests/) does not follow
# into the test fixtures: their servers are used as ``Any`` here.
postgres_fixture: Any = importlib.import_module("tests.fixtures.postgres")
minio_fixture: Any = importlib.import_module("tests.fixtures.minio")

INSTALL = "scripts/install-test-services installs it"
# The fixtures' own failures (pytest.skip locally, pytest.fail with CI=true).
_OUTCOMES: tuple[type[BaseException], ...] = (pytest.skip.Exception, pytest.fail.Exception)


class _TempDirs:
    """The one method of pytest's ``tmp_path_factory`` that the MinIO fixture calls."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        path = self.root / f"{basename}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path


def _fixture_body(fixture: Any) -> Callable[..., Generator[Any, None, None]]:
    body = getattr(fixture, "__wrapped__", None) or getattr(fixture, "__pytest_wrapped__", None)
    body = getattr(body, "obj", body)
    if not callable(body):
        raise BenchError(f"cannot reuse the test fixture {fixture!r} (pytest changed?)")
    return body  # type: ignore[no-any-return]


@contextmanager
def _service(what: str, generator: Generator[T, None, None]) -> Iterator[T]:
    try:
        server = next(generator)
    except _OUTCOMES as e:
        raise BenchError(f"{what} is missing or did not start: {e}; {INSTALL}") from None
    except StopIteration:
        raise BenchError(f"{what} did not start") from None
    try:
        yield server
    finally:
        generator.close()


@contextmanager
def postgres(dbname: str = "cargohold_bench") -> Iterator[tuple[Any, str]]:
    """A PostgreSQL server (the test suite's: fsync off, trust auth) with one new
    database; the server and the database's URL."""
    body = _fixture_body(postgres_fixture.postgres_server)
    with _service("PostgreSQL", body()) as server:
        try:
            server.admin(f"CREATE DATABASE {dbname}")
        except Exception as e:  # psycopg's errors, reported whole
            raise BenchError(f"PostgreSQL: CREATE DATABASE {dbname} failed: {e}") from e
        yield server, server.url(dbname)


@contextmanager
def minio(workdir: Path, bucket: str = "cargohold-bench") -> Iterator[tuple[Any, Path]]:
    """A MinIO server with its data under ``workdir`` and one new bucket; the server and
    its data dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    body = _fixture_body(minio_fixture.minio_server)
    with _service("MinIO", body(_TempDirs(workdir))) as server:
        server.client().make_bucket(bucket)
        yield server, workdir


@contextmanager
def postgres_and_minio(workdir: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """PostgreSQL and MinIO for a cargohold on them: its ``CARGOHOLD_*`` settings, and
    MinIO's data dir (where its blobs are)."""
    bucket = "cargohold-bench"
    with postgres() as (_, database), minio(workdir / "minio", bucket) as (s3, s3_data):
        yield (
            {
                "CARGOHOLD_DATABASE": database,
                "CARGOHOLD_BLOB_STORE": "s3",
                "CARGOHOLD_S3_ENDPOINT": s3.endpoint,
                "CARGOHOLD_S3_BUCKET": bucket,
                "CARGOHOLD_S3_ACCESS_KEY": s3.access_key,
                "CARGOHOLD_S3_SECRET_KEY": s3.secret_key,
            },
            s3_data,
        )
