"""The blobs this site knows of from its geo peers and does not hold yet: the backlog
that the blob fetcher (``replay/geo_blobs.py``) works through, in the geo database
(``bootstrap/stores.open_geo_database``: ``geo.sqlite``, or PostgreSQL's).

A row is written *before* the events that reference its blob are stored
(``replay/geo_store.py``), so a crash in between leaves at worst a row whose events
are not here yet (fetched anyway: the peer holds the blob), never an event whose blob
nobody will fetch. Rows are claimed with a lease, so several workers and nodes fetch
different blobs; the fetcher renews it while a fetch runs, so a fetcher that dies
(a SIGKILL mid-blob) holds its blobs for no longer than one short lease; a failed
fetch is retried later, with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

from cargohold.domain.ports import Database


@dataclass(frozen=True)
class Wanted:
    digest: str
    size: int
    site_id: str  # the peer whose events named it: asked first
    attempts: int


class SQLBlobBacklog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_table(self) -> None:
        with self.db.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS blob_backlog (digest TEXT PRIMARY KEY, "
                "size BIGINT NOT NULL, site_id TEXT NOT NULL, queued_ms BIGINT NOT NULL, "
                "attempts BIGINT NOT NULL, next_ms BIGINT NOT NULL, claim TEXT, "
                "claim_expires_ms BIGINT, last_error TEXT)"
            )

    def add(self, wanted: list[tuple[str, int]], site_id: str, now_ms: int) -> None:
        if not wanted:
            return
        with self.db.transaction() as c:
            c.executemany(
                "INSERT INTO blob_backlog (digest, size, site_id, queued_ms, attempts, "
                "next_ms) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (digest) DO NOTHING",
                [(digest, size, site_id, now_ms, now_ms) for digest, size in wanted],
            )

    def claim(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Wanted]:
        """Up to ``limit`` due blobs that no live claim holds, now held by ``owner``."""
        rows = self.db.query(
            "SELECT digest, size, site_id, attempts FROM blob_backlog WHERE next_ms <= ? "
            "AND (claim IS NULL OR claim_expires_ms < ?) ORDER BY queued_ms, digest LIMIT ?",
            (now_ms, now_ms, limit * 2),
        )
        taken: list[Wanted] = []
        for digest, size, site_id, attempts in rows:
            if len(taken) == limit:
                break
            with self.db.transaction() as c:
                c.execute(
                    "UPDATE blob_backlog SET claim = ?, claim_expires_ms = ? WHERE digest = ? "
                    "AND (claim IS NULL OR claim_expires_ms < ?)",
                    (owner, now_ms + lease_ms, digest, now_ms),
                )
                if c.rowcount == 1:
                    taken.append(Wanted(str(digest), int(size), str(site_id), int(attempts)))
        return taken

    def renew(self, owner: str, digests: list[str], now_ms: int, lease_ms: int) -> None:
        """Extend ``owner``'s claims on ``digests`` (fetches still running) by ``lease_ms``."""
        if not digests:
            return
        with self.db.transaction() as c:
            c.executemany(
                "UPDATE blob_backlog SET claim_expires_ms = ? WHERE digest = ? AND claim = ?",
                [(now_ms + lease_ms, digest, owner) for digest in digests],
            )

    def get(self, digest: str) -> Wanted | None:
        rows = self.db.query(
            "SELECT digest, size, site_id, attempts FROM blob_backlog WHERE digest = ?", (digest,)
        )
        if not rows:
            return None
        d, size, site_id, attempts = rows[0]
        return Wanted(str(d), int(size), str(site_id), int(attempts))

    def done(self, digest: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM blob_backlog WHERE digest = ?", (digest,))

    def failed(self, digest: str, error: str, next_ms: int) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE blob_backlog SET attempts = attempts + 1, next_ms = ?, claim = NULL, "
                "claim_expires_ms = NULL, last_error = ? WHERE digest = ?",
                (next_ms, error[:500], digest),
            )

    def summary(self) -> dict[str, tuple[int, int]]:
        """Per peer site id: (blobs, bytes) still wanted."""
        rows = self.db.query(
            "SELECT site_id, COUNT(*), COALESCE(SUM(size), 0) FROM blob_backlog GROUP BY site_id"
        )
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}
