"""The ``ProxyCache`` aggregate: an organisation that is a pull-through cache of an
upstream registry (Quay's proxy-cache organisations).

A pull of ``<org>/<path>`` that the cache lacks is fetched from the upstream's ``<path>``
(under the upstream's namespace prefix, if ``upstream_registry`` names one; Docker Hub's
official images get their ``library/`` prefix), stored in the repository ``<org>/<path>``
as ordinary content events written by the cache's actor, and served. The content itself
lives in the repositories' streams (``Repository`` events); this stream holds the
configuration and the upstream's health:

- ``Created`` once per organisation, ``Configured`` for each configuration (Quay's POST),
  ``Removed`` (Quay's DELETE): the cached repositories stay, as ordinary repositories;
- ``UpstreamFailed`` when the upstream stops answering (unreachable, 429, 5xx) and
  ``UpstreamRecovered`` when it answers again. Only the changes are events: an outage
  that a thousand pulls meet is one ``UpstreamFailed``, not a thousand.

The id is ``uuid5(site_id, "proxycache:<org>")``. The password enters an event only as
ciphertext (``credentials``, sealed by the command layer, as a mirror's is).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import Conflict, InvalidInput, NotFound
from cargohold.domain.topics import stored_as
from cargohold.domain.upstream import DOCKER_HUB, dialled, without_scheme
from cargohold.domain.values import RepositoryName

#: Quay's default ``expiration_s``: a cached tag is revalidated a day after it was.
DEFAULT_EXPIRATION_S = 86400
#: The longest ``expiration_s`` (ten years): past it, a number is a mistake.
MAX_EXPIRATION_S = 10 * 365 * 86400

_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*(:\d{{1,5}})?$")
_PATH_PART = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")


class ProxyCacheUnknown(NotFound):
    """The organisation is not a pull-through cache."""


class ProxyCacheExists(Conflict):
    """The organisation is a pull-through cache already."""


def proxy_cache_id(site_id: UUID, organization: str) -> UUID:
    """The stream id. NOTE: persisted; never change it."""
    return uuid5(site_id, f"proxycache:{organization}")


@dataclass(frozen=True)
class ProxyCacheSettings:
    """Quay's proxy-cache fields. ``upstream_registry`` is ``host[:port][/prefix]``;
    ``credentials`` is the password's ciphertext; ``insecure`` speaks plain HTTP to the
    upstream (Quay's meaning)."""

    upstream_registry: str
    username: str | None = None
    credentials: bytes | None = None
    expiration_s: int = DEFAULT_EXPIRATION_S
    insecure: bool = False

    def check(self) -> None:
        """Raise ``InvalidInput`` for settings an operator may not set (not on replay)."""
        host, prefix = split_upstream(self.upstream_registry)
        if not _HOST.match(host):
            raise InvalidInput(f"upstream_registry: {host!r} is not a registry host[:port]")
        if prefix and not all(_PATH_PART.match(p) for p in prefix.split("/")):
            raise InvalidInput(f"upstream_registry: {prefix!r} is not a repository path")
        if self.credentials is not None and not self.username:
            raise InvalidInput("upstream_registry_password needs upstream_registry_username")
        if self.username is not None and not self.username.strip():
            raise InvalidInput("upstream_registry_username is empty")
        if not 0 < self.expiration_s <= MAX_EXPIRATION_S:
            raise InvalidInput(f"expiration_s must be between 1 and {MAX_EXPIRATION_S}")

    @property
    def host(self) -> str:
        """The upstream's ``host[:port]`` as the client dials it."""
        host, _ = split_upstream(self.upstream_registry)
        return dialled(host)

    def upstream_path(self, name: RepositoryName) -> str:
        """The upstream repository that the cached repository ``name`` mirrors: its path
        below the organisation, under the upstream's prefix (Docker Hub's official images
        under ``library/``)."""
        _, prefix = split_upstream(self.upstream_registry)
        _, _, path = str(name).partition("/")
        if prefix:
            return f"{prefix}/{path}"
        if self.host == DOCKER_HUB and "/" not in path:
            return f"library/{path}"
        return path


def split_upstream(upstream_registry: str) -> tuple[str, str]:
    """``(host[:port], prefix)`` of ``upstream_registry`` (a scheme is dropped)."""
    host, _, prefix = without_scheme(upstream_registry).partition("/")
    if not host:
        raise InvalidInput("upstream_registry is required")
    return host.lower(), prefix


@stored_as("cargohold.domain.proxy_cache")
class ProxyCache(Aggregate):
    """One organisation's pull-through cache configuration (the module docstring).

    State: ``organization``; ``config`` (the settings' fields, None while not
    configured; ``settings`` builds the dataclass); ``failing`` (the upstream's last
    failure while it lasts, else None) and ``failing_since_ms``.
    """

    class Event(ContextEvent):
        """Base of every ``ProxyCache`` event: the provenance of the command."""

    class Created(Event, Aggregate.Created):
        organization: str

    class Configured(Event):
        upstream_registry: str
        username: str | None
        credentials: bytes | None
        expiration_s: int
        insecure: bool

        def apply(self, aggregate: ProxyCache) -> None:
            aggregate.config = {name: getattr(self, name) for name in _SETTINGS_FIELDS}
            aggregate.failing = None
            aggregate.failing_since_ms = None

    class Removed(Event):
        def apply(self, aggregate: ProxyCache) -> None:
            aggregate.config = None
            aggregate.failing = None
            aggregate.failing_since_ms = None

    class UpstreamFailed(Event):
        """The upstream stopped answering (or answers with another failure than
        before); cached content is served meanwhile."""

        message: str

        def apply(self, aggregate: ProxyCache) -> None:
            if aggregate.failing is None:
                aggregate.failing_since_ms = self.hlc.wall_ms
            aggregate.failing = self.message

    class UpstreamRecovered(Event):
        def apply(self, aggregate: ProxyCache) -> None:
            aggregate.failing = None
            aggregate.failing_since_ms = None

    def __init__(self, organization: str) -> None:
        self.organization = organization
        # NOTE: a plain dict, not the ProxyCacheSettings: snapshots hold only values the
        # transcoder knows (``settings`` builds the dataclass).
        self.config: dict[str, Any] | None = None
        self.failing: str | None = None
        self.failing_since_ms: int | None = None

    @property
    def settings(self) -> ProxyCacheSettings | None:
        return None if self.config is None else ProxyCacheSettings(**self.config)

    @classmethod
    def create(cls, organization: str, ctx: EventContext) -> ProxyCache:
        return cls._create(
            cls.Created,
            id=proxy_cache_id(ctx.site_id, organization),
            organization=organization,
            **ctx.event_fields(),
        )

    def configure(self, settings: ProxyCacheSettings, ctx: EventContext) -> None:
        """Quay's POST. Raises ``ProxyCacheExists`` while one is configured."""
        if self.settings is not None:
            raise ProxyCacheExists(
                f"organization {self.organization} is a proxy cache already: delete its "
                "configuration first"
            )
        self._trigger(self.Configured, ctx, **_fields(settings))

    def remove(self, ctx: EventContext) -> None:
        """Quay's DELETE. Raises ``ProxyCacheUnknown`` when none is configured."""
        if self.settings is None:
            raise ProxyCacheUnknown(f"organization {self.organization} is not a proxy cache")
        self._trigger(self.Removed, ctx)

    def upstream_failed(self, message: str, ctx: EventContext) -> None:
        """Record a failure of the upstream unless it is the one already recorded."""
        if self.settings is not None and self.failing != message:
            self._trigger(self.UpstreamFailed, ctx, message=message)

    def upstream_recovered(self, ctx: EventContext) -> None:
        if self.settings is not None and self.failing is not None:
            self._trigger(self.UpstreamRecovered, ctx)

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())


_SETTINGS_FIELDS = tuple(f.name for f in fields(ProxyCacheSettings))


def _fields(settings: ProxyCacheSettings) -> dict[str, Any]:
    return asdict(settings)
