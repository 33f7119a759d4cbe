"""The one composition root: ``Settings`` in, a wired ``Container`` out.

Nothing is built at import time. ``bootstrap`` checks every store it opens and turns a
failure into a one-line ``StartupError`` for the CLI to print.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsourcing.persistence import PersistenceError

from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.credentials import (
    Argon2PasswordHasher,
    HashedTokenMinter,
    JWTSigner,
    SigningKeyError,
    load_or_create_signing_key,
    load_signing_key,
)
from cargohold.adapters.eventstore import LogReader, log_environment
from cargohold.adapters.login_throttle import SQLLoginThrottle
from cargohold.adapters.sql import Database, PostgresDatabase, SQLiteDatabase
from cargohold.adapters.upload_sessions import SQLUploadSessions
from cargohold.commands.authentication import Authenticator
from cargohold.commands.identity import IdentityService
from cargohold.commands.registry import Caller, RegistryLog, RegistryService
from cargohold.commands.tag_windows import TagWindows
from cargohold.commands.uploads import UploadService
from cargohold.config import (
    ConfigError,
    Settings,
    default_tag_expiration,
    tag_expiration_options,
)
from cargohold.domain.clock import HybridLogicalClock, system_wall_ms
from cargohold.domain.credentials import PasswordHasher, TokenSigner
from cargohold.domain.errors import NameTaken, StorageError
from cargohold.domain.identity import AccountName, Principal, PrincipalKind, RepositoryRole
from cargohold.domain.ports import BlobStore
from cargohold.domain.repository import SparsePolicy
from cargohold.domain.values import Actor, ActorKind, RepositoryName
from cargohold.projections.access_log import BufferedAccessLog
from cargohold.projections.as_of import AsOfIdentityQueries, AsOfRegistryQueries
from cargohold.projections.audit_chain import AuditChain
from cargohold.projections.audit_queries import AuditQueries
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.origins import StreamOrigins
from cargohold.projections.queries import RegistryQueries
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay import as_of as as_of_views
from cargohold.replay.as_of import AsOfViews


class StartupError(Exception):
    """cargohold cannot start with these settings; the message is one line."""


@dataclass
class Container:
    settings: Settings
    site_id: uuid.UUID
    log: RegistryLog
    blobs: BlobStore
    views_db: Database
    runner: ProjectionRunner
    queries: RegistryQueries
    registry: RegistryService
    uploads: UploadService
    access_queries: IdentityQueries
    access: IdentityService
    authenticator: Authenticator
    signer: TokenSigner
    audit_chain: AuditChain
    tag_windows: TagWindows
    access_log: BufferedAccessLog
    audit_queries: AuditQueries
    #: Who may do what: the live rules, also when serving the registry as of a moment
    #: (``access_queries`` then shows that moment's teams and grants).
    authorization: IdentityQueries
    #: Set when serving the registry as it stood at a moment, read-only.
    as_of: AsOfViews | None = None
    as_of_db: Database | None = None

    @property
    def read_only(self) -> bool:
        return self.as_of is not None

    def close(self) -> None:
        self.runner.stop()
        self.access_log.close()  # NOTE: writes the buffered pulls and logins first
        if self.as_of_db is not None:
            self.as_of_db.close()
        self.views_db.close()
        self.log.close()


def bootstrap(
    settings: Settings,
    *,
    create_tables: bool = True,
    hasher: PasswordHasher | None = None,
    wall_ms: Callable[[], int] = system_wall_ms,
    as_of_progress: Callable[[int], None] | None = None,
) -> Container:
    """Open (and, with ``create_tables``, migrate) every store; catch the views up.

    ``hasher`` replaces argon2id's production parameters (tests use cheap ones);
    ``wall_ms`` is the wall clock of events and of tag expiry (tests drive it).
    With ``settings.as_of``, the container serves the registry as of that moment,
    read-only: its views are built (with ``create_tables``, reporting to
    ``as_of_progress``) or opened as built (without: the workers of ``serve``).
    """
    data_dir = Path(settings.data_dir)
    _prepare_data_dir(data_dir)
    views_db = open_views_database(settings)
    try:
        site_id = _site_id(settings, views_db)
        log = _open_log(settings, create_tables=create_tables)
        blobs = open_blob_store(settings)
        runner = ProjectionRunner(views_db, LogReader(log))
        sessions = SQLUploadSessions(views_db)
        throttle = SQLLoginThrottle(views_db)
        access_log = BufferedAccessLog(views_db, interval=settings.access_log_flush_seconds)
        if create_tables:
            runner.create_tables()
            sessions.create_table()
            throttle.create_table()
            access_log.create_table()
        runner.catch_up()
        signer = JWTSigner(_signing_key(settings), issuer=settings.auth_service)
        audit_chain = AuditChain(views_db, log.recorder, signer)
        if create_tables:
            audit_chain.create_tables()
    except BaseException:
        views_db.close()
        raise
    clock = HybridLogicalClock(wall_ms)
    access_queries = IdentityQueries(views_db)
    replicas = StreamOrigins(views_db, site_id)
    queries = RegistryQueries(views_db, now_ms=wall_ms)
    tag_windows = TagWindows(
        queries.tag_expiration_window,
        default_tag_expiration(settings),
        tag_expiration_options(settings),
    )
    registry = RegistryService(
        log,
        blobs,
        runner,
        clock,
        site_id,
        SparsePolicy(settings.sparse_manifests),
        creation_grants=_creation_grants(access_queries),
        tag_window=tag_windows.window,
        replicas=replicas,
    )
    uploads = UploadService(
        blobs, sessions, registry, queries, expiry_seconds=settings.upload_expiry_seconds
    )
    hasher = hasher or Argon2PasswordHasher()
    minter = HashedTokenMinter()
    access = IdentityService(
        log, runner, clock, site_id, hasher, minter, access_queries, registry, replicas=replicas
    )
    authenticator = Authenticator(
        log,
        site_id,
        hasher,
        minter,
        access_queries,
        throttle,
        recorder=access_log,
        replicas=replicas,
    )
    container = Container(
        settings=settings,
        site_id=site_id,
        log=log,
        blobs=blobs,
        views_db=views_db,
        runner=runner,
        queries=queries,
        registry=registry,
        uploads=uploads,
        access_queries=access_queries,
        access=access,
        authenticator=authenticator,
        signer=signer,
        audit_chain=audit_chain,
        tag_windows=tag_windows,
        access_log=access_log,
        audit_queries=AuditQueries(views_db),
        authorization=access_queries,
    )
    at_ms = settings.as_of_ms
    if at_ms is None:
        return container
    try:
        return _as_of(container, at_ms, wall_ms(), create_tables, as_of_progress)
    except BaseException:
        container.close()
        raise


def _as_of(
    live: Container,
    at_ms: int,
    now_ms: int,
    build: bool,
    progress: Callable[[int], None] | None,
) -> Container:
    """``live`` turned into the registry as of ``at_ms``: the queries read the views of
    that moment; authentication and authorisation stay live (``projections/as_of.py``)."""
    settings = live.settings
    db = as_of_views.open_views(settings, live.views_db, at_ms)
    try:
        views = as_of_views.build(
            settings,
            live.log,
            live.views_db,
            db,
            at_ms,
            now_ms=now_ms,
            progress=progress,
            refresh=build,
        )
    except as_of_views.AsOfError as e:
        db.close()
        raise StartupError(str(e)) from e
    except BaseException:
        db.close()
        raise
    queries = AsOfRegistryQueries(db, at_ms, live.queries)
    return dataclasses.replace(
        live,
        queries=queries,
        access_queries=AsOfIdentityQueries(db, live.access_queries),
        audit_queries=AuditQueries(db),
        tag_windows=TagWindows(
            queries.tag_expiration_window,
            default_tag_expiration(settings),
            tag_expiration_options(settings),
        ),
        as_of=views,
        as_of_db=db,
    )


def _creation_grants(access: IdentityQueries) -> Any:
    """Quay's grants for a new repository: the organisation's default permissions, and
    admin for the user who created it in an organisation (the strongest role wins)."""

    def grants(name: RepositoryName, creator: Actor) -> list[tuple[Principal, RepositoryRole]]:
        namespace = name.namespace
        if not access.organization_exists(namespace):
            return []
        roles: dict[Principal, RepositoryRole] = dict(access.default_permissions(namespace))
        if creator.kind is ActorKind.USER and creator.name != namespace:
            user = Principal(PrincipalKind.USER, creator.name)
            roles[user] = RepositoryRole.ADMIN
        return sorted(roles.items(), key=lambda item: item[0].sort_key)

    return grants


def _signing_key(settings: Settings) -> Any:
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
        return load_or_create_signing_key(Path(settings.data_dir) / "signing-key.pem", secret)
    except SigningKeyError as e:
        raise StartupError(str(e)) from e


ADMIN = "admin"


def ensure_admin(container: Container, generate: Any = None) -> str | None:
    """On a registry without accounts, create the superuser ``admin``.

    Its password is ``admin_password`` from the settings, or generated; the generated one
    is returned (for the operator to see once) and never stored or logged. ``None`` when
    there was nothing to do or the password came from the settings.
    """
    if container.access_queries.has_accounts():
        return None
    configured = container.settings.admin_password
    password = configured or (generate or _generate_password)()
    try:
        container.access.create_user(
            AccountName(ADMIN),
            "",
            password,
            Caller(Actor.system(), "first-start"),
            superuser=True,
        )
    except NameTaken:
        return None  # another node or worker got there first
    return None if configured else password


def _generate_password() -> str:
    import secrets

    return secrets.token_urlsafe(18)


def _prepare_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StartupError(f"data dir {data_dir} is not writable: {e.strerror or e}") from e


def open_views_database(settings: Settings, **kwargs: Any) -> Database:
    try:
        db: Database
        if settings.uses_postgres:
            db = PostgresDatabase(settings.postgres)
        else:
            db = SQLiteDatabase(Path(settings.data_dir) / "views.sqlite", **kwargs)
        db.check()
    except StorageError as e:
        raise StartupError(f"cannot open the database: {e.message}") from e
    return db


def _open_log(settings: Settings, *, create_tables: bool) -> RegistryLog:
    try:
        env = log_environment(settings, create_tables=create_tables)
        return RegistryLog(env, snapshot_interval=settings.snapshot_interval)
    except ConfigError as e:
        raise StartupError(str(e)) from e
    except (PersistenceError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StartupError(f"cannot open the event log: {first}") from e


def open_blob_store(settings: Settings) -> BlobStore:
    store: BlobStore
    if settings.blob_store == "s3":
        store = _s3_store(settings)
    else:
        store = FilesystemBlobStore(Path(settings.data_dir))
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


def _site_id(settings: Settings, db: Database) -> uuid.UUID:
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
    path = Path(settings.data_dir) / "site-id"
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
