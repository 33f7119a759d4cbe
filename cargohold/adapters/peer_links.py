"""The geo peers' table: each peer's link as its replicator last saw it, and the lease
that lets one replicator per peer run, however many workers and nodes serve the site.

It lives in the geo database (``geo.sqlite`` beside the views, kept apart so that a
replicator never waits on the views' writer; or the PostgreSQL database that every node
of a site shares), so every worker answers ``/api/v1/superuser/sites`` alike. It
is not a read model: the log does not describe links. What the site has taken from each
peer is the log's tracking row (``replay/geo_store.py``), written with the events; this
table only reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cargohold.domain.ports import Database

_COLUMNS = (
    "url",
    "site_id",
    "site_name",
    "state",
    "position",
    "head",
    "events_stored",
    "caught_up_ms",
    "contact_ms",
    "error",
)


@dataclass(frozen=True)
class PeerLink:
    """One peer's link. ``state``: ``starting`` (not read yet), ``replicating`` (behind
    its head), ``caught-up``, ``unreachable`` (retried), or ``refused`` (the peer will
    not serve this site: see ``error``)."""

    url: str
    site_id: str | None
    site_name: str | None
    state: str
    position: int  # the last position of the peer's log stored here
    head: int  # the peer's last position, when last read
    events_stored: int  # events of the peer's pages written here, in all
    caught_up_ms: int | None  # when a page last reached the peer's head
    contact_ms: int | None  # when the peer last answered
    error: str | None


class SQLPeerLinks:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_table(self) -> None:
        with self.db.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS peer_links (url TEXT PRIMARY KEY, site_id TEXT, "
                "site_name TEXT, state TEXT NOT NULL, position BIGINT NOT NULL, "
                "head BIGINT NOT NULL, events_stored BIGINT NOT NULL, caught_up_ms BIGINT, "
                "contact_ms BIGINT, error TEXT, lease_owner TEXT, lease_expires_ms BIGINT)"
            )

    def claim(self, url: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Take or renew the lease on ``url``'s replication for ``owner``; whether held."""
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO peer_links (url, state, position, head, events_stored) "
                "VALUES (?, 'starting', 0, 0, 0) ON CONFLICT (url) DO NOTHING",
                (url,),
            )
            c.execute(
                "UPDATE peer_links SET lease_owner = ?, lease_expires_ms = ? WHERE url = ? "
                "AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_ms < ?)",
                (owner, now_ms + lease_ms, url, owner, now_ms),
            )
            return bool(c.rowcount == 1)

    def release(self, url: str, owner: str) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE peer_links SET lease_owner = NULL, lease_expires_ms = NULL "
                "WHERE url = ? AND lease_owner = ?",
                (url, owner),
            )

    def record(self, link: PeerLink, owner: str) -> None:
        """Write ``link`` (by the lease's holder ``owner`` only)."""
        assignments = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
        values: list[Any] = [getattr(link, c) for c in _COLUMNS[1:]]
        with self.db.transaction() as c:
            c.execute(
                f"UPDATE peer_links SET {assignments} WHERE url = ? AND lease_owner = ?",
                (*values, link.url, owner),
            )

    def links(self, urls: tuple[str, ...]) -> list[PeerLink]:
        """The links of ``urls`` (the configured peers), in that order; a peer no
        replicator has met yet is ``starting``."""
        rows = {
            str(r[0]): r for r in self.db.query(f"SELECT {', '.join(_COLUMNS)} FROM peer_links")
        }
        found: list[PeerLink] = []
        for url in urls:
            row = rows.get(url)
            if row is None:
                found.append(PeerLink(url, None, None, "starting", 0, 0, 0, None, None, None))
            else:
                found.append(PeerLink(*row))
        return found
