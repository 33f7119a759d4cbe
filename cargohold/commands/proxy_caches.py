"""Commands on pull-through cache organisations: configure, remove, validate, and the
upstream's health (``domain/proxy_cache.py``).

The upstream password is sealed (``SecretBox``) before it reaches an event, bound to the
organisation's name; only ``open_credentials`` (used to talk to the upstream) opens it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from cargohold.commands.unit_of_work import Caller, UnitOfWork
from cargohold.domain.context import EventContext
from cargohold.domain.credentials import SecretBox
from cargohold.domain.errors import InvalidInput, OrganizationUnknown
from cargohold.domain.proxy_cache import (
    DEFAULT_EXPIRATION_S,
    ProxyCache,
    ProxyCacheSettings,
    ProxyCacheUnknown,
    proxy_cache_id,
)
from cargohold.domain.upstream import UpstreamError, UpstreamRegistry, UpstreamUnauthorized

#: Builds the client of a cache's upstream: (settings, username, password) -> registry.
CacheUpstreamFactory = Callable[[ProxyCacheSettings, str | None, str | None], UpstreamRegistry]


class Organizations(Protocol):
    def organization_exists(self, name: str) -> bool: ...


@dataclass(frozen=True)
class ProxyCacheInput:
    """A cache's settings as an operator gives them (``password`` in plaintext here only)."""

    upstream_registry: str
    username: str | None = None
    password: str | None = None
    expiration_s: int = DEFAULT_EXPIRATION_S
    insecure: bool = False


class ProxyCacheService:
    def __init__(
        self,
        unit: UnitOfWork,
        secrets: SecretBox,
        organizations: Organizations,
        upstreams: CacheUpstreamFactory,
    ) -> None:
        self.unit = unit
        self.secrets = secrets
        self.organizations = organizations
        self.upstreams = upstreams

    def get(self, org: str) -> ProxyCache | None:
        """The organisation's cache as the log has it (None: never configured)."""
        cache: ProxyCache | None = self.unit.find(proxy_cache_id(self.unit.site_id, org))
        return cache

    def configure(self, org: str, given: ProxyCacheInput, caller: Caller) -> None:
        """Make ``org`` a pull-through cache. Raises ``OrganizationUnknown``,
        ``InvalidInput`` and ``ProxyCacheExists``."""
        if not self.organizations.organization_exists(org):
            raise OrganizationUnknown(f"organization {org} does not exist")
        settings = self._settings(org, given)

        def load(ctx: EventContext) -> ProxyCache:
            return self.get(org) or ProxyCache.create(org, ctx)

        self._execute(org, caller, load, lambda cache, ctx: cache.configure(settings, ctx))

    def remove(self, org: str, caller: Caller) -> None:
        """Stop ``org`` being a cache (what it cached stays). Raises ``ProxyCacheUnknown``."""
        self._execute(org, caller, self._load(org), lambda cache, ctx: cache.remove(ctx))

    def validate(self, org: str, given: ProxyCacheInput) -> str:
        """Quay's ``validateproxycache``: ``"Valid"`` when the upstream accepted the
        credentials (or is open), ``"Anonymous"`` when it wants a login and none was given.
        Raises ``InvalidInput`` with the reason otherwise."""
        if not self.organizations.organization_exists(org):
            raise OrganizationUnknown(f"organization {org} does not exist")
        settings = self._checked(given)
        upstream = self.upstreams(settings, settings.username, given.password)
        try:
            return "Valid" if upstream.ping() else "Anonymous"
        except UpstreamUnauthorized:
            raise InvalidInput(
                "Failed login to remote registry. Please verify entered details and try again."
            ) from None
        except UpstreamError as e:
            raise InvalidInput(
                f"Failed to validate Proxy cache configuration: {e.message}"
            ) from None
        finally:
            upstream.close()

    def open_credentials(self, cache: ProxyCache) -> tuple[str | None, str | None]:
        """``(username, password)`` for the upstream; ``SecretUnreadable`` when the
        password was sealed under another key."""
        settings = cache.settings
        if settings is None or settings.credentials is None:
            return (settings.username if settings else None), None
        password = self.secrets.open(settings.credentials, _context(cache.organization))
        return settings.username, password.decode()

    def upstream_failed(self, org: str, message: str, caller: Caller) -> None:
        """Record that the upstream failed (a no-op when that failure is recorded)."""
        self._execute(
            org, caller, self._load(org), lambda cache, ctx: cache.upstream_failed(message, ctx)
        )

    def upstream_recovered(self, org: str, caller: Caller) -> None:
        self._execute(
            org, caller, self._load(org), lambda cache, ctx: cache.upstream_recovered(ctx)
        )

    # -- helpers -----------------------------------------------------------------------

    def _settings(self, org: str, given: ProxyCacheInput) -> ProxyCacheSettings:
        """The checked settings, with the password sealed for ``org``."""
        settings = self._checked(given)
        if not given.password:
            return settings
        return replace(
            settings, credentials=self.secrets.seal(given.password.encode(), _context(org))
        )

    @staticmethod
    def _checked(given: ProxyCacheInput) -> ProxyCacheSettings:
        """The settings ``given`` names (no credentials yet); ``InvalidInput`` when an
        operator may not set them."""
        settings = ProxyCacheSettings(
            given.upstream_registry,
            given.username or None,
            None,
            given.expiration_s,
            given.insecure,
        )
        settings.check()
        if given.password and not settings.username:
            raise InvalidInput("upstream_registry_password needs upstream_registry_username")
        return settings

    def _load(self, org: str) -> Callable[[EventContext], ProxyCache]:
        def load(ctx: EventContext) -> ProxyCache:
            cache = self.get(org)
            if cache is None:
                raise ProxyCacheUnknown(f"organization {org} is not a proxy cache")
            return cache

        return load

    def _execute(
        self,
        org: str,
        caller: Caller,
        load: Callable[[EventContext], ProxyCache],
        decide: Callable[[ProxyCache, EventContext], None],
    ) -> None:
        self.unit.execute(
            proxy_cache_id(self.unit.site_id, org),
            caller,
            load,
            decide,
            busy=f"the proxy cache of {org} is too busy; try again",
        )


def _context(org: str) -> str:
    """What a cache's password is bound to: its organisation."""
    return f"proxycache:{org}"
