"""Settings to stores: each store the registry keeps, opened, checked and migrated.

Every function here turns ``Settings`` into the plain values an adapter takes (paths from
``adapters/data_dir.py``, a PostgreSQL address, a key) and a failure into a one-line
``StartupError`` for the CLI to print.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.persistence import PersistenceError

from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.data_dir import DataDir
from cargohold.adapters.eventstore import RegistryLog
from cargohold.adapters.eventstore import log_environment as _log_environment
from cargohold.adapters.secret_box import (
    AesGcmSecretBox,
    SecretKeyError,
    load_or_create_secret_key,
    read_secret_key,
)
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.adapters.tokens import SigningKeyError, load_or_create_signing_key, load_signing_key
from cargohold.config import Settings
from cargohold.domain.errors import StorageError
from cargohold.domain.ports import BlobStore, Database


class StartupError(Exception):
    """cargohold cannot start with these settings; the message is one line."""


def data_dir(settings: Settings) -> DataDir:
    return DataDir(settings.data_dir)


def prepare_data_dir(settings: Settings) -> DataDir:
    layout = data_dir(settings)
    try:
        layout.prepare()
    except OSError as e:
        raise StartupError(f"data dir {layout.root} is not writable: {e.strerror or e}") from e
    return layout


def open_views_database(settings: Settings, **kwargs: Any) -> Database:
    """The views' database; ``kwargs`` go to the SQLite driver."""
    try:
        db: Database
        if settings.uses_postgres:
            from cargohold.adapters.postgres import PostgresDatabase

            db = PostgresDatabase(settings.postgres)
        else:
            db = SQLiteDatabase(data_dir(settings).views, **kwargs)
        db.check()
    except StorageError as e:
        raise StartupError(f"cannot open the database: {e.message}") from e
    return db


def open_geo_database(settings: Settings, views_db: Database) -> Database:
    """Where geo-replication keeps its links, leases and blob backlog: on SQLite a file
    of its own (PERF: the replicator writes it for every page it stores, and would
    otherwise wait behind the views' writer, folding those very pages); on PostgreSQL
    the views' database, shared by every node of the site."""
    if settings.uses_postgres:
        return views_db
    try:
        db = SQLiteDatabase(data_dir(settings).geo)
        db.check()
    except StorageError as e:
        raise StartupError(f"cannot open the geo-replication database: {e.message}") from e
    return db


def move_geo_tables(views_db: Database, geo_db: Database) -> None:
    """Move what a data dir of an earlier version kept in the views' file (the blob
    backlog; the links are rebuilt by the replicators) into ``geo_db``."""
    if geo_db is views_db or views_db.dialect != "sqlite":
        return
    tables = {name for (name,) in views_db.query("SELECT name FROM sqlite_master")}
    if "blob_backlog" in tables:
        rows = views_db.query("SELECT * FROM blob_backlog")
        with geo_db.transaction() as c:
            c.executemany(
                "INSERT INTO blob_backlog (digest, size, site_id, queued_ms, attempts, "
                "next_ms, claim, claim_expires_ms, last_error) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                rows,
            )
    moved = {"blob_backlog", "peer_links"} & tables
    if not moved:
        return  # every start after the first: no write transaction on the views
    with views_db.transaction() as c:
        for table in moved:
            c.execute(f"DROP TABLE {table}")


def log_environment(settings: Settings, *, create_tables: bool = True) -> dict[str, str]:
    """The event log's environment for these settings. Raises ``StartupError`` for a
    ``cipher_key`` that is not base64 of 16, 24 or 32 bytes."""
    try:
        return _log_environment(
            sqlite_path=None if settings.uses_postgres else data_dir(settings).events,
            postgres=settings.postgres if settings.uses_postgres else None,
            cipher_key=settings.cipher_key,
            create_tables=create_tables,
        )
    except ValueError as e:
        raise StartupError(str(e)) from e


def open_log(settings: Settings, *, create_tables: bool = True) -> RegistryLog:
    env = log_environment(settings, create_tables=create_tables)
    try:
        return RegistryLog(env, snapshot_interval=settings.snapshot_interval)
    except (PersistenceError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StartupError(f"cannot open the event log: {first}") from e


def open_blob_store(settings: Settings) -> BlobStore:
    store: BlobStore
    if settings.blob_store == "s3":
        store = _s3_store(settings)
    else:
        store = FilesystemBlobStore(data_dir(settings).blob_root)
    try:
        store.check()
    except StorageError as e:
        raise StartupError(f"blob store unusable: {e.message}") from e
    return store


def _s3_store(settings: Settings) -> BlobStore:
    from cargohold.adapters.blobs.s3 import S3BlobStore

    try:
        return S3BlobStore.connect(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region or None,
            prefix=settings.s3_prefix,
        )
    except StorageError as e:
        raise StartupError(e.message) from e


def signing_key(settings: Settings) -> Any:
    """The registry-token key: the configured PEM file, or one generated and kept in the
    data dir (encrypted under the cipher key when there is one)."""
    try:
        if settings.signing_key_file:
            path = Path(settings.signing_key_file)
            try:
                pem = path.read_bytes()
            except OSError as e:
                raise SigningKeyError(f"cannot read signing key {path}: {e.strerror or e}") from e
            return load_signing_key(pem, None, str(path))
        secret = settings.cipher_key.encode() if settings.cipher_key else None
        return load_or_create_signing_key(data_dir(settings).signing_key, secret)
    except SigningKeyError as e:
        raise StartupError(str(e)) from e


def secret_box(settings: Settings) -> AesGcmSecretBox:
    """What seals upstream passwords: the configured key file, or one generated and kept
    in the data dir (sealed under the cipher key when there is one)."""
    wrapping = base64.b64decode(settings.cipher_key) if settings.cipher_key else None
    try:
        if settings.mirror_key_file:
            return AesGcmSecretBox(read_secret_key(Path(settings.mirror_key_file), wrapping))
        return AesGcmSecretBox(load_or_create_secret_key(data_dir(settings).mirror_key, wrapping))
    except SecretKeyError as e:
        raise StartupError(str(e)) from e


def site_id(settings: Settings, db: Database) -> uuid.UUID:
    """This installation's site id: made once, then kept.

    On the embedded default it is a file in the data dir; on PostgreSQL a row in the
    database, so that every HTTP node sharing the database is the same site.
    """
    if settings.uses_postgres:
        with db.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS cargohold_site "
                "(singleton INTEGER PRIMARY KEY CHECK (singleton = 1), id TEXT NOT NULL)"
            )
            c.execute(
                "INSERT INTO cargohold_site (singleton, id) VALUES (1, ?) "
                "ON CONFLICT (singleton) DO NOTHING",
                (str(uuid.uuid4()),),
            )
            row = c.execute("SELECT id FROM cargohold_site").fetchone()
        assert row is not None
        return uuid.UUID(row[0])
    path = data_dir(settings).site_id
    try:
        return uuid.UUID(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as e:
        raise StartupError(f"{path} does not hold a site id (a UUID)") from e
    new = uuid.uuid4()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{new}\n")
    os.replace(tmp, path)
    return uuid.UUID(path.read_text().strip())
