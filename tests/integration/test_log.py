"""The event log on SQLite and PostgreSQL: msgpack round trips, and the at-rest cipher."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cargohold.adapters.eventstore import LogReader, RegistryLog
from cargohold.bootstrap import bootstrap, log_environment
from cargohold.config import Settings
from cargohold.domain.repository import Repository
from cargohold.domain.values import RepositoryName
from tests.factories import push_image, settings_for
from tests.strategies import repository_event_classes, repository_events

CIPHER_KEY = base64.b64encode(b"k" * 32).decode()
MARKER = "plaintext-marker-7f3a9c"


@pytest.fixture
def log_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    return settings_for(request, backend, tmp_path / "data")


@pytest.fixture
def log(log_settings: Settings) -> Iterator[RegistryLog]:
    Path(log_settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = RegistryLog(log_environment(log_settings))
    try:
        yield app
    finally:
        app.close()


def test_every_event_class_is_generated() -> None:
    names = {c.__name__ for c in repository_event_classes()}
    assert {
        "Created",
        "BlobLinked",
        "ManifestPushed",
        "TagMoved",
        "TagDeleted",
        "ManifestDeleted",
    } <= names


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(repository_events(), min_size=1, max_size=5))
def test_every_event_class_round_trips_through_the_store(
    log: RegistryLog, events: list[Any]
) -> None:
    # One fresh stream per event: versions within a stream must be unique.
    stored = [type(e)(**{**e.__dict__, "originator_id": uuid.uuid4()}) for e in events]
    recordings = log.events.put(stored)
    for event in stored:
        assert list(log.events.get(event.originator_id)) == [event]
    reader = LogReader(log)
    first = recordings[0].notification.id
    read_back = [e for _, e in reader.read(first - 1, len(stored))]
    assert read_back == stored


def _raw_states(s: Settings) -> list[bytes]:
    if s.uses_postgres:
        pg = s.postgres
        with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=pg.dbname) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.columns WHERE column_name = 'state' "
                    "AND data_type = 'bytea' AND table_schema = 'public'"
                )
            ]
            return [bytes(r[0]) for t in tables for r in conn.execute(f'SELECT state FROM "{t}"')]  # type: ignore[call-overload]
    conn = sqlite3.connect(Path(s.data_dir) / "events.sqlite")
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # NOTE: the events' tables, not the geo peers' tracking table (no state there).
        tables = [
            t
            for t in names
            if any(c[1] == "state" for c in conn.execute(f"PRAGMA table_info({t})"))
        ]
        return [bytes(r[0]) for t in tables for r in conn.execute(f"SELECT state FROM {t}")]
    finally:
        conn.close()


@pytest.mark.parametrize("cipher", [False, True], ids=["plain", "encrypted"])
def test_the_cipher_keeps_event_state_unreadable_at_rest(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, cipher: bool
) -> None:
    extra = {"cipher_key": CIPHER_KEY} if cipher else {}
    s = settings_for(request, backend, tmp_path / "data", snapshot_interval=2, **extra)
    c = bootstrap(s)
    try:
        image = push_image(c, "acme/secret", "v1", annotations={"note": MARKER})
        push_image(c, "acme/secret", "v2", seed="x")  # and a snapshot or two
        states = _raw_states(s)
        assert len(states) >= 6
        leaked = [state for state in states if MARKER.encode() in state]
        if cipher:
            assert leaked == []
            assert not any(b"acme/secret" in state for state in states)
        else:
            assert leaked  # the control: without the cipher the marker is plain to see
        repo: Repository = c.log.repository.get(
            Repository.create_id(c.site_id, RepositoryName("acme/secret"))
        )
        assert image.digest in repo.manifests  # and the log still reads back
    finally:
        c.close()


def test_a_wrong_cipher_key_cannot_read_the_log(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    s = settings_for(request, backend, tmp_path / "data", cipher_key=CIPHER_KEY)
    c = bootstrap(s)
    push_image(c, "acme/secret", "v1", annotations={"note": MARKER})
    c.close()
    other = settings_for(
        request, backend, tmp_path / "data", cipher_key=base64.b64encode(b"x" * 32).decode()
    )
    if other.uses_postgres:
        other = Settings(**{**other.__dict__, "database": s.database})
    wrong = RegistryLog(log_environment(other))
    try:
        with pytest.raises(ValueError, match="cipher"):
            list(LogReader(wrong).read(0, 10))
    finally:
        wrong.close()
