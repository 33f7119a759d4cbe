"""Serving a pull-through cache organisation: what ``/v2`` asks before it reads a
repository of a cache (``domain/proxy_cache.py``).

- A **manifest by tag** is served from the cache while its upstream confirmed the tag
  less than ``expiration_s`` ago (``cached_tags``). Past that, one HEAD asks the upstream:
  the same digest records ``TagRevalidated``; another one (or a tag not cached yet) fetches
  the manifest and records it as a push by the cache (``ManifestPushed`` with every
  reference still upstream, ``TagMoved``, ``TagRevalidated``); a tag the upstream no
  longer has is deleted here too.
- A **manifest by digest** is immutable: fetched once, when missing.
- A **blob** the repository lacks is linked when the blob store has it (another
  repository cached it), or else fetched once however many clients ask at a time, and
  streamed to them while it lands (``Spool``); it is linked when it is complete and
  verified.

When the upstream is unreachable, answers 429 or 5xx, or refuses the cache's credentials,
what is cached is served; the failure is recorded (``UpstreamFailed``, once per outage,
and ``UpstreamRecovered`` when it answers again) and logged. Only what is not cached fails:
``UpstreamThrottled`` (429) or ``UpstreamUnreachable`` (503).

Content is written as the cache (``Actor(MIRROR, "proxycache:<org>")``), under the
pulling request's id, so the audit log shows which pull filled the cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from typing import BinaryIO, Protocol

from cargohold.commands.proxy_caches import CacheUpstreamFactory, ProxyCacheService
from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.credentials import SecretUnreadable
from cargohold.domain.errors import (
    BlobUnknown,
    DomainError,
    ManifestUnknown,
    ReferenceInvalid,
    TagUnknown,
    UpstreamThrottled,
    UpstreamUnreachable,
)
from cargohold.domain.ports import BlobStore
from cargohold.domain.proxy_cache import ProxyCacheSettings
from cargohold.domain.repository_rules import SparsePolicy
from cargohold.domain.upstream import (
    UpstreamBlob,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRegistry,
    UpstreamUnauthorized,
)
from cargohold.domain.values import (
    Actor,
    ActorKind,
    Digest,
    RepositoryName,
    Tag,
    parse_reference,
)

log = logging.getLogger(__name__)


class CacheViews(Protocol):
    """What the cache reads of the views (``projections/proxy_caches.ProxyCacheQueries``
    and ``projections/queries.RegistryQueries``)."""

    def cache(self, org: str, /) -> CacheRow | None: ...

    def validated_ms(self, repository: RepositoryName, tag: Tag, /) -> int | None: ...


class CacheRow(Protocol):
    """An organisation's cache as the views have it."""

    @property
    def org(self) -> str: ...

    @property
    def username(self) -> str | None: ...

    @property
    def expiration_s(self) -> int: ...

    @property
    def failing(self) -> str | None: ...

    @property
    def configured_ms(self) -> int: ...

    @property
    def settings(self) -> ProxyCacheSettings: ...


class ManifestRow(Protocol):
    @property
    def digest(self) -> Digest: ...


class Content(Protocol):
    """What the cache reads of a repository's content (``RegistryQueries``)."""

    def tagged_manifest(self, name: RepositoryName, tag: Tag, /) -> ManifestRow | None: ...

    def manifest(self, name: RepositoryName, digest: Digest, /) -> ManifestRow | None: ...


class Spool(Protocol):
    """Single-flight blob fetches (``adapters/spool.SpoolDir``)."""

    def fetch(
        self,
        digest: Digest,
        open_upstream: Callable[[], AbstractContextManager[UpstreamBlob]],
        commit: Callable[[BinaryIO, int], None],
        stored: Callable[[], bool],
    ) -> tuple[int, Iterator[bytes]] | None: ...


class PullThrough:
    def __init__(
        self,
        caches: ProxyCacheService,
        views: CacheViews,
        content: Content,
        registry: RegistryService,
        blobs: BlobStore,
        spool: Spool,
        upstreams: CacheUpstreamFactory,
        now_ms: Callable[[], int],
    ) -> None:
        self.caches = caches
        self.views = views
        self.content = content
        self.registry = registry
        self.blobs = blobs
        self.spool = spool
        self.upstreams = upstreams
        self.now_ms = now_ms
        # One client per configured cache (its probe, connections and tokens reused).
        self._clients: dict[tuple[str, int], UpstreamRegistry] = {}
        self._lock = threading.Lock()

    # -- manifests -----------------------------------------------------------------------

    def manifest(self, name: RepositoryName, reference: str, caller: Caller) -> None:
        """Make the cache hold what ``reference`` names now, as far as the upstream
        says (the module docstring); a no-op outside a cache organisation."""
        cache = self.views.cache(name.namespace)
        if cache is None:
            return
        try:
            ref = parse_reference(reference)
        except ReferenceInvalid:
            return  # names nothing; /v2 answers as for any repository
        if isinstance(ref, Digest):
            if self.content.manifest(name, ref) is None:
                self._fetch_manifest(cache, name, ref, caller, cached=False)
            return
        row = self.content.tagged_manifest(name, ref)
        here = None if row is None else row.digest
        if here is not None:
            validated = self.views.validated_ms(name, ref)
            if validated is not None and self.now_ms() - validated < cache.expiration_s * 1000:
                return
        self._fetch_manifest(cache, name, ref, caller, cached=here is not None, here=here)

    def _fetch_manifest(
        self,
        cache: CacheRow,
        name: RepositoryName,
        ref: Tag | Digest,
        caller: Caller,
        *,
        cached: bool,
        here: Digest | None = None,
    ) -> None:
        writer = _writer(cache, caller)
        try:
            upstream, settings = self._client(cache)
            path = settings.upstream_path(name)
            if isinstance(ref, Tag) and here is not None:
                there = upstream.manifest_digest(path, str(ref))
                if there is None:
                    raise UpstreamNotFound(f"tag {ref} is gone from the upstream")
                if there == here:
                    # NOTE: a tag another pull moved meanwhile is served as it is now.
                    with suppress(TagUnknown):
                        self.registry.revalidate_tag(name, ref, here, writer)
                    self._recovered(cache, writer)
                    return
            fetched = upstream.manifest(path, str(ref))
        except UpstreamNotFound as e:
            self._recovered(cache, writer)
            if isinstance(ref, Tag) and here is not None:
                self._forget(name, ref, writer)
            raise ManifestUnknown(
                f"manifest {ref} is not in repository {name}: {e.message}"
            ) from None
        except (UpstreamError, SecretUnreadable) as e:
            self._failed(cache, e, writer)
            if cached:
                return  # served from the cache
            raise _unavailable(e, f"manifest {ref} of {name}", ManifestUnknown) from None
        self.registry.push_manifest(
            name,
            ref,
            fetched.body,
            fetched.media_type,
            writer,
            sparse=SparsePolicy.UPSTREAM,
            revalidated=isinstance(ref, Tag),
        )
        self._recovered(cache, writer)

    def _forget(self, name: RepositoryName, tag: Tag, writer: Caller) -> None:
        with suppress(DomainError):  # gone meanwhile
            self.registry.untag(name, tag, writer)

    # -- blobs ---------------------------------------------------------------------------

    def blob(
        self, name: RepositoryName, digest: Digest, caller: Caller
    ) -> tuple[int, Iterator[bytes]] | None:
        """The size and bytes of a blob that ``name`` lacks, from the cache's upstream;
        None outside a cache organisation."""
        cache = self.views.cache(name.namespace)
        if cache is None:
            return None
        writer = _writer(cache, caller)
        if not self.blobs.exists(digest):
            try:
                upstream, settings = self._client(cache)
            except SecretUnreadable as e:
                self._failed(cache, e, writer)
                raise _unavailable(e, f"blob {digest} of {name}", BlobUnknown) from None
            path = settings.upstream_path(name)

            def commit(source: BinaryIO, size: int) -> None:
                self.blobs.put(source, expected=digest, expected_size=size)
                self.registry.link_blob(name, digest, writer)

            try:
                spooled = self.spool.fetch(
                    digest,
                    lambda: upstream.blob(path, digest),
                    commit,
                    lambda: self.blobs.exists(digest),
                )
            except UpstreamNotFound as e:
                self._recovered(cache, writer)
                raise BlobUnknown(
                    f"blob {digest} is not in repository {name}: {e.message}"
                ) from None
            except UpstreamError as e:
                self._failed(cache, e, writer)
                raise _unavailable(e, f"blob {digest} of {name}", BlobUnknown) from None
            if spooled is not None:
                self._recovered(cache, writer)
                return spooled
        # In the store (cached for another repository, or landed meanwhile): link it here.
        size = self.registry.link_blob(name, digest, writer)
        return size, self.blobs.read(digest)

    # -- the upstream --------------------------------------------------------------------

    def _client(self, cache: CacheRow) -> tuple[UpstreamRegistry, ProxyCacheSettings]:
        """The upstream client of ``cache`` as configured now (``SecretUnreadable`` when
        its password was sealed under another key)."""
        key = (cache.org, cache.configured_ms)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            aggregate = self.caches.get(cache.org)
            if aggregate is None or aggregate.settings is None:
                raise UpstreamUnreachable(f"organization {cache.org} is not a proxy cache now")
            username, password = self.caches.open_credentials(aggregate)
            client = self.upstreams(aggregate.settings, username, password)
            with self._lock:
                for old in [k for k in self._clients if k[0] == cache.org]:
                    self._clients.pop(old).close()
                self._clients[key] = client
        return client, cache.settings

    def _failed(self, cache: CacheRow, error: Exception, writer: Caller) -> None:
        message = error.message if isinstance(error, UpstreamError) else str(error)
        if isinstance(error, UpstreamUnauthorized) and cache.username is None:
            return  # anonymous access refused: what Docker Hub says of a missing repository
        log.warning("the upstream of proxy cache %s failed: %s", cache.org, message)
        if cache.failing == message:
            return
        try:
            self.caches.upstream_failed(cache.org, message, writer)
        except DomainError as e:
            log.warning("could not record the failure of proxy cache %s: %s", cache.org, e)

    def _recovered(self, cache: CacheRow, writer: Caller) -> None:
        if cache.failing is None:
            return
        try:
            self.caches.upstream_recovered(cache.org, writer)
        except DomainError as e:
            log.warning("could not record the recovery of proxy cache %s: %s", cache.org, e)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _writer(cache: CacheRow, caller: Caller) -> Caller:
    return Caller(
        Actor(ActorKind.MIRROR, f"proxycache:{cache.org}"),
        caller.request_id,
        caller.client_address,
    )


def _unavailable(error: Exception, what: str, missing: Callable[[str], DomainError]) -> DomainError:
    """What a pull of ``what``, which the cache lacks, fails with when its upstream
    failed with ``error``."""
    message = error.message if isinstance(error, UpstreamError) else str(error)
    if isinstance(error, UpstreamRateLimited):
        retry = None if error.retry_after is None else int(error.retry_after + 0.999)
        return UpstreamThrottled(
            f"{what} is not cached and the upstream rate-limits: {message}", retry
        )
    if isinstance(error, UpstreamUnauthorized):
        return missing(f"{what} is not cached and the upstream refused: {message}")
    return UpstreamUnreachable(f"{what} is not cached and the upstream failed: {message}")
