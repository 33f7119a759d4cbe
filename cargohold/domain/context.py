"""Who, where, when and why of a command: stamped on every event it causes.

Every command method of an aggregate takes an ``EventContext``; its fields are copied onto
each event that the command triggers, which is what makes the audit log complete and what
the geo merge rules order by (``hlc``, then ``site_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from cargohold.domain.values import Actor, HLCTimestamp


@dataclass(frozen=True)
class EventContext:
    """The provenance of one command.

    ``actor`` caused it, ``site_id`` is the origin site (the one whose log the events go
    into), ``hlc`` is the hybrid logical clock reading taken once for the command, and
    ``request_id`` ties the events to the HTTP request (or CLI run) that asked for them,
    and ``client_address`` is the network address that request came from (``None`` for
    the CLI and for the system's own commands).
    """

    actor: Actor
    site_id: UUID
    hlc: HLCTimestamp
    request_id: str
    client_address: str | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields every event of the command carries, as keyword arguments."""
        return {
            "actor": self.actor,
            "site_id": self.site_id,
            "hlc": self.hlc,
            "request_id": self.request_id,
            "client_address": self.client_address,
        }


class ContextEvent(Aggregate.Event):
    """Base of every event of every aggregate: the provenance of its command (see
    ``EventContext``). Each aggregate's own ``Event`` derives from it.

    A persisted schema: version 2 added ``client_address`` (events stored before it
    read as ``None``). Stored topics name the concrete classes, never this one.
    """

    class_version = 2

    actor: Actor
    site_id: UUID
    hlc: HLCTimestamp
    request_id: str
    client_address: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["client_address"] = None

    def mutate(self, aggregate: Any) -> Any:
        """Apply the event, and keep its stamp on the aggregate as ``last_hlc`` (the
        unit of work advances its clock past it before deciding: a stream's stamps then
        rise with its versions, whichever process or node wrote each)."""
        result = super().mutate(aggregate)
        if result is not None:
            result.last_hlc = self.hlc
        return result


def ctx_time(ctx: EventContext) -> datetime:
    """The wall-clock time of a command, from its HLC reading."""
    return datetime.fromtimestamp(ctx.hlc.wall_ms / 1000, tz=UTC)
