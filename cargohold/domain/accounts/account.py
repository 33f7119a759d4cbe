"""The ``Account`` aggregate: a user (see the package docstring for the shared rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.accounts.rules import check_email, check_hash, window_change
from cargohold.domain.context import ContextEvent, EventContext, ctx_time
from cargohold.domain.errors import (
    ApiTokenUnknown,
    CredentialInvalid,
    InvalidInput,
    ScopeInvalid,
)
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
)
from cargohold.domain.topics import stored_as


@stored_as("cargohold.domain.accounts")
class Account(Aggregate):
    """A user. State: ``name``, ``email``, ``password_hash``, ``superuser``,
    ``api_tokens`` (the ids of its live API tokens; the views hold their scopes), and
    ``tag_expiration_s`` (the namespace's time-machine window, ``None`` for the
    installation's default).
    """

    # NOTE: v2 added ``tag_expiration_s``; see ``upcast_v1_v2``.
    class_version = 2

    class Event(ContextEvent):
        """Base of this aggregate's events (the command's provenance)."""

    class Created(Event, Aggregate.Created):
        name: AccountName
        email: str
        password_hash: str
        superuser: bool

    class PasswordChanged(Event):
        password_hash: str

        def apply(self, aggregate: Account) -> None:
            aggregate.password_hash = self.password_hash

    class SuperuserGranted(Event):
        def apply(self, aggregate: Account) -> None:
            aggregate.superuser = True

    class SuperuserRevoked(Event):
        def apply(self, aggregate: Account) -> None:
            aggregate.superuser = False

    class ApiTokenIssued(Event):
        """A scoped API token; only its hash is kept (the token is shown once)."""

        token_id: str
        token_hash: str
        scopes: tuple[ApiScope, ...]
        expires_at: datetime
        description: str

        def apply(self, aggregate: Account) -> None:
            aggregate.api_tokens.add(self.token_id)

    class ApiTokenRevoked(Event):
        token_id: str

        def apply(self, aggregate: Account) -> None:
            aggregate.api_tokens.discard(self.token_id)

    class TagExpirationWindowSet(Event):
        """The user namespace's time-machine window (Quay's ``tag_expiration_s``): how
        long a deleted or moved tag stays restorable. ``from_seconds`` is the window it
        replaces (``None``: the installation's default)."""

        seconds: int
        from_seconds: int | None

        def apply(self, aggregate: Account) -> None:
            aggregate.tag_expiration_s = self.seconds

    def __init__(self, name: AccountName, email: str, password_hash: str, superuser: bool) -> None:
        self.name = name
        self.email = email
        self.password_hash = password_hash
        self.superuser = superuser
        self.api_tokens: set[str] = set()
        self.tag_expiration_s: int | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before the time-machine window: the installation's default."""
        state["tag_expiration_s"] = None

    @staticmethod
    def create_id(site_id: UUID, name: AccountName) -> UUID:
        """``uuid5(site_id, "account:<name>")``. NOTE: persisted; never change it."""
        return uuid5(site_id, f"account:{name}")

    @classmethod
    def create(
        cls,
        name: AccountName,
        email: str,
        password_hash: str,
        ctx: EventContext,
        superuser: bool = False,
    ) -> Account:
        """A new user. Raises ``EmailInvalid`` or ``CredentialInvalid`` (empty hash)."""
        check_email(email)
        check_hash(password_hash, "password hash")
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            email=email,
            password_hash=password_hash,
            superuser=superuser,
            **ctx.event_fields(),
        )

    def change_password(self, password_hash: str, ctx: EventContext) -> None:
        """Record a new password hash (always an event: salted hashes never repeat)."""
        check_hash(password_hash, "password hash")
        self._trigger(self.PasswordChanged, ctx, password_hash=password_hash)

    def grant_superuser(self, ctx: EventContext) -> None:
        """Idempotent."""
        if not self.superuser:
            self._trigger(self.SuperuserGranted, ctx)

    def revoke_superuser(self, ctx: EventContext) -> None:
        """Idempotent."""
        if self.superuser:
            self._trigger(self.SuperuserRevoked, ctx)

    def issue_api_token(
        self,
        token_id: str,
        token_hash: str,
        scopes: tuple[ApiScope, ...],
        expires_at: datetime,
        ctx: EventContext,
        description: str = "",
    ) -> None:
        """Record a new API token. Raises ``CredentialInvalid`` for an empty hash or id,
        ``ScopeInvalid`` for no scopes, and ``InvalidInput`` for a naive or past expiry."""
        check_hash(token_hash, "API token hash")
        if not token_id or token_id in self.api_tokens:
            raise CredentialInvalid("an API token needs a new, non-empty id")
        if not scopes:
            raise ScopeInvalid("an API token needs at least one scope")
        if expires_at.tzinfo is None or expires_at <= ctx_time(ctx):
            raise InvalidInput("an API token must expire at an aware time in the future")
        self._trigger(
            self.ApiTokenIssued,
            ctx,
            token_id=token_id,
            token_hash=token_hash,
            scopes=tuple(sorted(set(scopes), key=lambda s: s.value)),
            expires_at=expires_at,
            description=description,
        )

    def revoke_api_token(self, token_id: str, ctx: EventContext) -> None:
        """Raises ``ApiTokenUnknown`` for a token this account does not hold."""
        if token_id not in self.api_tokens:
            raise ApiTokenUnknown(f"{self.name} has no API token {token_id[:64]!r}")
        self._trigger(self.ApiTokenRevoked, ctx, token_id=token_id)

    def set_tag_expiration_window(self, seconds: int, ctx: EventContext) -> None:
        """Set the time-machine window. Idempotent; ``InvalidInput`` below zero."""
        change = window_change(self.tag_expiration_s, seconds)
        if change is not None:
            self._trigger(self.TagExpirationWindowSet, ctx, **change)

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())
