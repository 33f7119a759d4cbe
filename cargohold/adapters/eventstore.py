"""The event log's storage: eventsourcing's SQLite or PostgreSQL recorder, configured.

``log_environment`` turns ``Settings`` into the environment mapping the eventsourcing
``Application`` reads (persistence module, our msgpack transcoder, the optional AES-GCM
cipher). ``LogReader`` presents the stored log to projections and replay.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.application import Application

from cargohold.config import ConfigError, Settings

TRANSCODER_TOPIC = "cargohold.adapters.transcoder:MsgpackTranscoder"
CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"


def log_environment(
    settings: Settings, *, create_tables: bool = True, pool_size: int = 8
) -> dict[str, str]:
    env = {
        "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
        "CREATE_TABLE": "y" if create_tables else "n",
        # The repository cache stays off: several processes write the same aggregates.
        "AGGREGATE_CACHE_MAXSIZE": "",
    }
    if settings.uses_postgres:
        pg = settings.postgres
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_HOST": pg.host,
                "POSTGRES_PORT": str(pg.port),
                "POSTGRES_USER": pg.user,
                "POSTGRES_PASSWORD": pg.password,
                "POSTGRES_DBNAME": pg.dbname,
                "POSTGRES_POOL_SIZE": str(pool_size),
                "POSTGRES_CONNECT_TIMEOUT": "10",
                # NOTE: readers can miss events with the DB functions on; keep them off.
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
                "POSTGRES_LOCK_TIMEOUT": "30",
            }
        )
    else:
        env.update(
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(Path(settings.data_dir) / "events.sqlite"),
                "SQLITE_LOCK_TIMEOUT": "60",
            }
        )
    if settings.cipher_key:
        try:
            key = base64.b64decode(settings.cipher_key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("cipher_key must be base64 (of 16, 24 or 32 bytes)") from None
        if len(key) not in (16, 24, 32):
            raise ConfigError("cipher_key must decode to 16, 24 or 32 bytes")
        env.update({"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": settings.cipher_key})
    return env


class LogReader:
    """Reads (notification id, domain event) pairs from an application's log."""

    def __init__(self, app: Application[Any]) -> None:
        self.app = app

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        notifications = self.app.recorder.select_notifications(
            start=after, limit=limit, stop=stop, inclusive_of_start=False
        )
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]
