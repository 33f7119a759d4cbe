"""The event log's storage: eventsourcing's SQLite or PostgreSQL recorder, configured.

``RegistryLog`` is the log (one eventsourcing ``Application`` for every aggregate);
``log_environment`` builds the environment mapping it reads (persistence module, our
msgpack transcoder, the optional AES-GCM cipher) from plain values. ``LogReader``
presents the stored log to projections and replay.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, MapperDeserialisationError
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import Environment, resolve_topic

from cargohold.adapters.sql import PostgresAddress
from cargohold.domain.accounts import Account, Organization
from cargohold.domain.mirror import Mirror
from cargohold.domain.proxy_cache import ProxyCache
from cargohold.domain.repository import Repository

TRANSCODER_TOPIC = "cargohold.adapters.transcoder:MsgpackTranscoder"
CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"


def log_environment(
    *,
    sqlite_path: Path | None = None,
    postgres: PostgresAddress | None = None,
    cipher_key: str = "",
    create_tables: bool = True,
    pool_size: int = 8,
) -> dict[str, str]:
    """The environment of a ``RegistryLog`` on SQLite (the file ``sqlite_path``) or on
    PostgreSQL (``postgres``), with the AES-GCM cipher when ``cipher_key`` (base64 of 16,
    24 or 32 bytes) is given. Raises ``ValueError`` for a key that is not one."""
    env = {
        "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
        "CREATE_TABLE": "y" if create_tables else "n",
        # The repository cache stays off: several processes write the same aggregates.
        "AGGREGATE_CACHE_MAXSIZE": "",
        # One tracking row per geo peer (the position of its log stored here), moved
        # forward only (the library's single-row tracking table).
        "SINGLE_ROW_TRACKING": "y",
    }
    if postgres is not None:
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_HOST": postgres.host,
                "POSTGRES_PORT": str(postgres.port),
                "POSTGRES_USER": postgres.user,
                "POSTGRES_PASSWORD": postgres.password,
                "POSTGRES_DBNAME": postgres.dbname,
                "POSTGRES_POOL_SIZE": str(pool_size),
                "POSTGRES_CONNECT_TIMEOUT": "10",
                # NOTE: readers can miss events with the DB functions on; keep them off.
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
                "POSTGRES_LOCK_TIMEOUT": "30",
            }
        )
    elif sqlite_path is not None:
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "60",
            }
        )
    else:
        raise ValueError("the event log needs a SQLite file or a PostgreSQL database")
    if cipher_key:
        try:
            key = base64.b64decode(cipher_key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("cipher_key must be base64 (of 16, 24 or 32 bytes)") from None
        if len(key) not in (16, 24, 32):
            raise ValueError("cipher_key must decode to 16, 24 or 32 bytes")
        env.update({"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": cipher_key})
    return env


class RegistryLog(Application[UUID]):
    """The event log of repositories (an eventsourcing ``Application``).

    Configured only from the ``env`` mapping of ``log_environment``: unlike the
    library's default, it never reads ``os.environ``. Snapshots every
    ``snapshot_interval`` events of a repository, an organisation, an account or a mirror.
    """

    name = "registry"

    def __init__(self, env: Mapping[str, str], snapshot_interval: int = 200) -> None:
        # NOTE: the library reads this class variable through the instance; setting it per
        # instance makes the interval configurable without a class per setting.
        self.snapshotting_intervals = {  # type: ignore[misc]
            Repository: snapshot_interval,
            Organization: snapshot_interval,
            Account: snapshot_interval,
            Mirror: snapshot_interval,
            ProxyCache: snapshot_interval,
        }
        super().__init__(env=dict(env))

    def construct_recorder(self) -> ApplicationRecorder:
        """The library's *process* recorder: an application recorder that also stores a
        tracking position in the transaction of the events it inserts (what a geo peer's
        events are stored with: ``replay/geo_store.py``)."""
        return self.factory.process_recorder()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        merged = dict(type(self).env)
        merged["IS_SNAPSHOTTING_ENABLED"] = "y"
        merged.update(env or {})
        return Environment(name, merged)


def plain_state(mapper: Any, state: bytes) -> bytes:
    """A stored event's state as the transcoder made it: deciphered and decompressed by
    ``mapper`` (the library's ``Mapper.to_domain_event`` order, eventsourcing 9.5)."""
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    return bytes(state)


class LogReader:
    """Reads (notification id, domain event) pairs from an application's log.

    PERF: on SQLite it selects plain rows itself and turns them into events without the
    library's per-row ``Notification`` and ``StoredEvent`` objects, remembering the
    originator ids and topics it has met: a replay reads a million events. The events
    are the ones ``Mapper.to_domain_event`` makes (a test compares them); other
    recorders go through the library.
    """

    def __init__(self, app: Application[Any]) -> None:
        self.app = app
        recorder = app.recorder
        self._sqlite_table: str | None = (
            recorder.events_table_name if isinstance(recorder, SQLiteApplicationRecorder) else None
        )
        self._ids: dict[str, UUID] = {}
        self._topics: dict[str, type] = {}

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        if self._sqlite_table is not None:
            return self._read_sqlite(self._sqlite_table, after, limit, stop)
        notifications = self.app.recorder.select_notifications(
            start=after, limit=limit, stop=stop, inclusive_of_start=False
        )
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    def read_streams(self, ids: Sequence[UUID], through: int) -> Sequence[tuple[int, Any]]:
        """The (notification id, domain event) pairs of the streams ``ids`` up to
        notification ``through``, each stream in version order (the geo fold's history:
        ``projections/merge.py``)."""
        if not ids:
            return []
        recorder = self.app.recorder
        if self._sqlite_table is not None:
            keys = [i.hex for i in ids]  # NOTE: how the library stores them in SQLite
            assert isinstance(recorder, SQLiteApplicationRecorder)
            marks = ", ".join("?" for _ in keys)
            sql = (
                "SELECT rowid, originator_id, originator_version, topic, state FROM "
                f"{self._sqlite_table} WHERE originator_id IN ({marks}) AND rowid <= ? "
                "ORDER BY originator_id, originator_version"
            )
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(sql, [*keys, through])
                rows = c.fetchall()
            return [(row[0], self._event(row[1], row[2], row[3], row[4])) for row in rows]
        from cargohold.adapters.postgres import stream_rows

        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in stream_rows(recorder, ids, through)]

    def versions(self, ids: Sequence[UUID]) -> dict[UUID, int]:
        """The last version stored of each of the streams ``ids`` that has any (one
        query: what a geo peer's page is checked against, ``replay/geo_store.py``)."""
        unique = sorted(set(ids))
        if not unique:
            return {}
        recorder = self.app.recorder
        if self._sqlite_table is None:
            from cargohold.adapters.postgres import stream_versions

            return stream_versions(recorder, unique)
        assert isinstance(recorder, SQLiteApplicationRecorder)
        found: dict[UUID, int] = {}
        # NOTE: SQLite binds at most 32,766 parameters; a page holds at most 10,000 ids.
        for start in range(0, len(unique), 10_000):
            chunk = unique[start : start + 10_000]
            marks = ", ".join("?" for _ in chunk)
            sql = (
                f"SELECT originator_id, MAX(originator_version) FROM {self._sqlite_table} "
                f"WHERE originator_id IN ({marks}) GROUP BY originator_id"
            )
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(sql, [i.hex for i in chunk])
                found.update((UUID(row[0]), int(row[1])) for row in c.fetchall())
        return found

    def _read_sqlite(
        self, table: str, after: int, limit: int, stop: int | None
    ) -> list[tuple[int, Any]]:
        sql = f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
        params: list[int] = [after]
        sql += "WHERE rowid > ? "
        if stop is not None:
            sql += "AND rowid <= ? "
            params.append(stop)
        sql += "ORDER BY rowid LIMIT ?"
        params.append(limit)
        recorder = self.app.recorder
        assert isinstance(recorder, SQLiteApplicationRecorder)
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            rows = c.fetchall()
        return [(row[0], self._event(row[1], row[2], row[3], row[4])) for row in rows]

    def _event(self, originator_id: str, version: int, topic: str, state: bytes) -> Any:
        """What ``Mapper.to_domain_event`` makes of a stored event (eventsourcing 9.5)."""
        mapper = self.app.mapper
        cls = self._topics.get(topic)
        if cls is None:
            cls = self._topics[topic] = resolve_topic(topic)
        try:
            event_state: dict[str, Any] = mapper.transcoder.decode(plain_state(mapper, state))
        except Exception as e:
            msg = f"cannot decode event {originator_id} v{version} ({topic}): {e}"
            raise MapperDeserialisationError(msg) from e
        uuid = self._ids.get(originator_id)
        if uuid is None:
            if len(self._ids) >= 65_536:
                self._ids.clear()
            uuid = self._ids[originator_id] = UUID(originator_id)
        event_state["originator_id"] = uuid
        event_state["originator_version"] = version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event
