"""The ``NamespaceClaim`` aggregate: one name, one user or organisation (see the package
docstring)."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.identity import (
    AccountName,
    NamespaceKind,
)
from cargohold.domain.topics import stored_as


@stored_as("cargohold.domain.accounts")
class NamespaceClaim(Aggregate):
    """The claim of a name by a user or an organisation; one per name and site.

    It has one event and no methods: its only job is to make the second creator of a
    name fail on the primary key (see the module docstring).
    """

    class Event(ContextEvent):
        """Base of this aggregate's events (the command's provenance)."""

    class Created(Event, Aggregate.Created):
        name: AccountName
        kind: NamespaceKind

    def __init__(self, name: AccountName, kind: NamespaceKind) -> None:
        self.name = name
        self.kind = kind

    @staticmethod
    def create_id(site_id: UUID, name: AccountName) -> UUID:
        """``uuid5(site_id, "namespace:<name>")``. NOTE: persisted; never change it."""
        return uuid5(site_id, f"namespace:{name}")

    @classmethod
    def create(cls, name: AccountName, kind: NamespaceKind, ctx: EventContext) -> NamespaceClaim:
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            kind=kind,
            **ctx.event_fields(),
        )
