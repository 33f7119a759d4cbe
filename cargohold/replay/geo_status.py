"""What ``GET /api/v1/superuser/sites`` and ``cargohold site status`` show: this site,
and each geo peer's link as its replicator last recorded it (``adapters/peer_links``).

For each peer: its state, the position of its log stored here, its head when last read,
the blobs its events named that this site does not hold yet (the backlog), the lag in
events (head - position) and in seconds (how long since this site last held
everything the peer had: about the poll interval while all is well, growing while the
peer is unreachable or far ahead; null before the first catch-up), the events stored
from it, when it last answered, and the last error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cargohold.adapters.blob_backlog import SQLBlobBacklog
from cargohold.adapters.eventstore import RegistryLog
from cargohold.adapters.peer_links import SQLPeerLinks
from cargohold.domain.clock import system_wall_ms
from cargohold.projections.runner import ProjectionRunner


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _backlog(found: tuple[int, int] | None) -> dict[str, int]:
    blobs, size = found or (0, 0)
    return {"blobs": blobs, "bytes": size}


class SiteStatus:
    def __init__(
        self,
        log: RegistryLog,
        runner: ProjectionRunner,
        site_id: UUID,
        site_name: str,
        peers: tuple[str, ...],
        links: SQLPeerLinks,
        backlog: SQLBlobBacklog,
        now_ms: Callable[[], int] = system_wall_ms,
    ) -> None:
        self.backlog = backlog
        self.log = log
        self.runner = runner
        self.site_id = site_id
        self.site_name = site_name
        self.peers = peers
        self.links = links
        self._now_ms = now_ms

    def status(self) -> dict[str, Any]:
        now = self._now_ms()
        backlog = self.backlog.summary()
        peers = []
        for link in self.links.links(self.peers):
            lag_s = None if link.caught_up_ms is None else max(0, now - link.caught_up_ms) / 1000
            peers.append(
                {
                    "url": link.url,
                    "site_id": link.site_id,
                    "site_name": link.site_name,
                    "state": link.state,
                    "position": link.position,
                    "head": link.head,
                    "lag_events": max(0, link.head - link.position),
                    "lag_seconds": lag_s,
                    "events_stored": link.events_stored,
                    "last_contact": _iso(link.contact_ms),
                    "error": link.error,
                    "blob_backlog": _backlog(backlog.get(link.site_id or "")),
                }
            )
        return {
            "site": {
                "site_id": str(self.site_id),
                "site_name": self.site_name or None,
                "position": int(self.log.recorder.max_notification_id() or 0),
                "views_position": self.runner.position(),
            },
            "peers": peers,
        }
