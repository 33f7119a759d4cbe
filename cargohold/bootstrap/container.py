"""``Settings`` in, a wired ``Container`` out.

The container is what the composition root hands out: ``http/app.create_app`` and the
CLI take their collaborators from it and pass each one explicitly to the resource, chore
or operation that uses it. Nothing below the composition root knows it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cargohold.adapters.blob_backlog import SQLBlobBacklog
from cargohold.adapters.eventstore import LogReader, RegistryLog
from cargohold.adapters.login_throttle import SQLLoginThrottle
from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.adapters.peer_links import SQLPeerLinks
from cargohold.adapters.spool import SpoolDir
from cargohold.adapters.tokens import HashedTokenMinter, JWTSigner
from cargohold.adapters.upload_sessions import SQLUploadSessions
from cargohold.adapters.upstream import HttpUpstream
from cargohold.bootstrap import stores
from cargohold.bootstrap.stores import StartupError
from cargohold.commands.authentication import Authenticator
from cargohold.commands.creation_grants import quay_creation_grants
from cargohold.commands.first_start import ensure_admin as _ensure_admin
from cargohold.commands.identity import IdentityService
from cargohold.commands.mirror_sync import MirrorSync
from cargohold.commands.mirrors import MirrorService
from cargohold.commands.proxy_caches import ProxyCacheService
from cargohold.commands.pull_through import PullThrough
from cargohold.commands.registry import RegistryService
from cargohold.commands.tag_windows import TagWindows
from cargohold.commands.unit_of_work import UnitOfWork
from cargohold.commands.uploads import UploadService
from cargohold.config import Settings, default_tag_expiration, tag_expiration_options
from cargohold.domain.clock import HybridLogicalClock, system_wall_ms
from cargohold.domain.credentials import PasswordHasher, TokenSigner
from cargohold.domain.mirror import MirrorSettings
from cargohold.domain.ports import BlobStore, Database
from cargohold.domain.proxy_cache import ProxyCacheSettings
from cargohold.domain.repository_rules import SparsePolicy
from cargohold.domain.upstream import parse_reference
from cargohold.projections.access_log import BufferedAccessLog
from cargohold.projections.audit.chain import AuditChain
from cargohold.projections.audit.queries import AuditQueries
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.mirrors import MirrorQueries
from cargohold.projections.origins import StreamOrigins
from cargohold.projections.proxy_caches import ProxyCacheQueries
from cargohold.projections.queries import RegistryQueries
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay import as_of
from cargohold.replay.geo_blobs import GeoBlobStore, PeerFeeds


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
    identity_queries: IdentityQueries
    identity: IdentityService
    authenticator: Authenticator
    signer: TokenSigner
    audit_chain: AuditChain
    tag_windows: TagWindows
    access_log: BufferedAccessLog
    audit_queries: AuditQueries
    mirrors: MirrorService
    mirror_sync: MirrorSync
    mirror_queries: MirrorQueries
    proxy_caches: ProxyCacheService
    proxy_cache_queries: ProxyCacheQueries
    #: Fills the repositories of cache organisations; None when serving a past moment.
    pull_through: PullThrough | None
    #: Who may do what: the live rules, also when serving the registry as of a moment
    #: (``identity_queries`` then shows that moment's teams and grants).
    authorization: IdentityQueries
    #: Where the next two live (``stores.open_geo_database``): on SQLite a file of its own.
    geo_db: Database
    #: The geo peers' links, as their replicators last saw them (``replay/geo_replicator``).
    peer_links: SQLPeerLinks
    #: The blobs geo peers' events name that this site does not hold yet.
    blob_backlog: SQLBlobBacklog
    #: A blob client per geo peer whose site id is known.
    geo_feeds: PeerFeeds
    #: Set when serving the registry as it stood at a moment, read-only: its views, and
    #: the database that holds them.
    as_of: as_of.AsOfViews | None = None
    as_of_db: Database | None = None

    @property
    def read_only(self) -> str | None:
        """Why every write is refused (serving a past moment), or ``None``."""
        return None if self.as_of is None else as_of.refusal(self.as_of.at_ms)

    def close(self) -> None:
        if self.pull_through is not None:
            self.pull_through.close()
        self.runner.stop()
        self.access_log.close()  # NOTE: writes the buffered pulls and logins first
        if self.as_of_db is not None:
            self.as_of_db.close()
        if self.geo_db is not self.views_db:
            self.geo_db.close()
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
    stores.prepare_data_dir(settings)
    views_db = stores.open_views_database(settings)
    geo_db: Database | None = None
    try:
        site_id = stores.site_id(settings, views_db)
        log = stores.open_log(settings, create_tables=create_tables)
        blobs = stores.open_blob_store(settings)
        runner = ProjectionRunner(views_db, LogReader(log))
        sessions = SQLUploadSessions(views_db)
        throttle = SQLLoginThrottle(views_db)
        access_log = BufferedAccessLog(views_db, interval=settings.access_log_flush_seconds)
        geo_db = stores.open_geo_database(settings, views_db)
        peer_links = SQLPeerLinks(geo_db)
        blob_backlog = SQLBlobBacklog(geo_db)
        if create_tables:
            runner.create_tables()
            sessions.create_table()
            throttle.create_table()
            access_log.create_table()
            peer_links.create_table()
            blob_backlog.create_table()
            stores.move_geo_tables(views_db, geo_db)
        geo_feeds = PeerFeeds(peer_links, settings.peer_urls, settings.peer_token)
        if settings.peer_urls:
            # NOTE: every reader then serves a blob a peer's events named and that is
            # not here yet (replay/geo_blobs.py), manifests included.
            blobs = GeoBlobStore(
                blobs, blob_backlog, geo_feeds, SpoolDir(stores.data_dir(settings).geo_spool)
            )
        runner.catch_up()
        signer = JWTSigner(stores.signing_key(settings), issuer=settings.auth_service)
        audit_chain = AuditChain(views_db, log.recorder, signer)
        if create_tables:
            audit_chain.create_tables()
    except BaseException:
        if geo_db is not None and geo_db is not views_db:
            geo_db.close()
        views_db.close()
        raise
    clock = HybridLogicalClock(wall_ms)
    identity_queries = IdentityQueries(views_db)
    replicas = StreamOrigins(views_db, site_id, geo=bool(settings.peer_urls))
    queries = RegistryQueries(views_db, now_ms=wall_ms)
    tag_windows = _tag_windows(settings, queries)
    cache_queries = ProxyCacheQueries(views_db)
    registry = RegistryService(
        UnitOfWork(log, runner, clock, site_id),
        blobs,
        SparsePolicy(settings.sparse_manifests),
        creation_grants=quay_creation_grants(identity_queries),
        tag_window=tag_windows.window,
        replicas=replicas,
        content_guard=cache_queries.guard,
    )
    uploads = UploadService(
        blobs, sessions, registry, queries, expiry_seconds=settings.upload_expiry_seconds
    )
    hasher = hasher or Argon2PasswordHasher()
    minter = HashedTokenMinter()
    identity = IdentityService(
        UnitOfWork(log, runner, clock, site_id, stripes=16),
        hasher,
        minter,
        identity_queries,
        registry,
        replicas=replicas,
        mirror_robots=MirrorQueries(views_db),
    )
    authenticator = Authenticator(
        log,
        site_id,
        hasher,
        minter,
        identity_queries,
        throttle,
        recorder=access_log,
        replicas=replicas,
    )
    mirrors = MirrorService(
        UnitOfWork(log, runner, clock, site_id, stripes=16),
        registry,
        stores.secret_box(settings),
        identity_queries,
    )
    mirror_sync = MirrorSync(mirrors, registry, blobs, upstream_client)
    proxy_caches = ProxyCacheService(
        UnitOfWork(log, runner, clock, site_id, stripes=16),
        stores.secret_box(settings),
        identity_queries,
        cache_upstream_client,
    )
    pull_through = PullThrough(
        proxy_caches,
        cache_queries,
        queries,
        registry,
        blobs,
        SpoolDir(stores.data_dir(settings).cache_spool),
        cache_upstream_client,
        wall_ms,
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
        identity_queries=identity_queries,
        identity=identity,
        authenticator=authenticator,
        signer=signer,
        audit_chain=audit_chain,
        tag_windows=tag_windows,
        access_log=access_log,
        audit_queries=AuditQueries(views_db, str(site_id)),
        mirrors=mirrors,
        mirror_sync=mirror_sync,
        mirror_queries=MirrorQueries(views_db),
        proxy_caches=proxy_caches,
        proxy_cache_queries=cache_queries,
        pull_through=pull_through,
        authorization=identity_queries,
        geo_db=geo_db,
        peer_links=peer_links,
        blob_backlog=blob_backlog,
        geo_feeds=geo_feeds,
    )
    at_ms = settings.as_of_ms
    if at_ms is None:
        return container
    try:
        return _as_of(container, at_ms, wall_ms(), create_tables, as_of_progress)
    except BaseException:
        container.close()
        raise


def upstream_client(
    settings: MirrorSettings, username: str | None, password: str | None
) -> HttpUpstream:
    """The HTTP client of a mirror's upstream registry."""
    registry, _ = parse_reference(settings.external_reference)
    return HttpUpstream(
        registry,
        username,
        password,
        verify_tls=settings.verify_tls,
        proxy=settings.proxy,
    )


def cache_upstream_client(
    settings: ProxyCacheSettings, username: str | None, password: str | None
) -> HttpUpstream:
    """The HTTP client of a pull-through cache's upstream. A client waits on it, so it
    gives up fast (one retry, after at most 0.5 s) and the cache serves what it has."""
    return HttpUpstream(
        settings.host,
        username,
        password,
        verify_tls=not settings.insecure,
        timeout=15.0,
        max_attempts=2,
        max_wait=0.5,
    )


def _tag_windows(settings: Settings, queries: RegistryQueries) -> TagWindows:
    return TagWindows(
        queries.tag_expiration_window,
        default_tag_expiration(settings),
        tag_expiration_options(settings),
    )


def _as_of(
    live: Container,
    at_ms: int,
    now_ms: int,
    build: bool,
    progress: Callable[[int], None] | None,
) -> Container:
    """``live`` turned into the registry as of ``at_ms``: the queries read the views of
    that moment; authentication and authorisation stay live (``projections/as_of.py``)."""
    try:
        past = as_of.open_registry(
            stores.data_dir(live.settings),
            LogReader(live.log),
            live.views_db,
            live.queries,
            live.identity_queries,
            at_ms,
            now_ms=now_ms,
            refresh=build,
            progress=progress,
        )
    except as_of.AsOfError as e:
        raise StartupError(str(e)) from e
    return dataclasses.replace(
        live,
        queries=past.queries,
        identity_queries=past.identity_queries,
        audit_queries=past.audit_queries,
        tag_windows=_tag_windows(live.settings, past.queries),
        pull_through=None,
        as_of=past.views,
        as_of_db=past.db,
    )


def ensure_admin(container: Container, generate: Callable[[], str] | None = None) -> str | None:
    """``commands/first_start.ensure_admin`` with the container's settings and services."""
    return _ensure_admin(
        container.identity,
        container.identity_queries,
        container.settings.admin_password,
        generate,
    )
