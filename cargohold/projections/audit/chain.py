"""Tamper evidence: a hash chain over the stored log, sealed as it grows, signed at checkpoints.

``AuditChain`` seals: it adds the digest of every stored event after the sealed head to
the chain and signs a checkpoint of the running link every ``checkpoint_every`` events or
``checkpoint_seconds``, whichever comes first; ``verify`` hands over to
``chain_verify``. What is hashed, linked and signed, and the tables, are
``chain_format.py``'s.

The sealer's head, ``audit_seal (name, position, link, ...)``: sealing advances it by
compare-and-set in the same transaction as the digests it adds, so several workers or
nodes can seal at once: one wins each batch, the others re-read.

What it cannot catch: a change made to an event before it is sealed (``serve`` seals
every second; ``replay audit-seal`` does it by hand), and, in the stretch after the last
checkpoint, a rewrite of events together with their recorded digests. Both are the usual
limits of a chain kept beside the data it protects; publish the latest checkpoint
elsewhere (``audit-verify`` prints it) to close the second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from cargohold.domain.ports import Cursor, Database
from cargohold.projections.audit.chain_format import (
    GENESIS,
    SEAL_NAME,
    TABLES,
    Notary,
    RawLog,
    checkpoint_statement,
    next_link,
    read_checkpoints,
    read_head,
    row_digest,
)
from cargohold.projections.audit.chain_verify import AuditReport, ChainVerifier

SEAL_BATCH = 2000


class AuditChain:
    """Seals the stored log into the chain and verifies it; see the module docstring."""

    def __init__(
        self,
        db: Database,
        log: RawLog,
        notary: Notary,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.log = log
        self.notary = notary
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._now = now

    def create_tables(self) -> None:
        with self.db.transaction() as c:
            for statement in TABLES:
                c.execute(statement)
            c.execute(
                "INSERT INTO audit_seal (name, position, link, checkpoint_position,"
                " checkpoint_at) SELECT ?, 0, ?, 0, ? WHERE NOT EXISTS"
                " (SELECT 1 FROM audit_seal WHERE name = ?)",
                (SEAL_NAME, GENESIS.hex(), self._now(), SEAL_NAME),
            )

    # -- sealing ---------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """The sealed head: the last sealed position and the link there."""
        return read_head(self.db)

    def seal(self, *, limit: int | None = None, yield_on_race: bool = False) -> int:
        """Add every stored event after the sealed head to the chain (at most ``limit``);
        sign a checkpoint when one is due. Returns the number of events sealed here.

        Safe to call from several processes at once: a batch another sealer got to first
        is re-read, never sealed twice. With ``yield_on_race`` (every worker's sealer
        chore) the first such batch ends the pass instead, leaving the rest to the
        sealer that won it: PERF, sealers in step would otherwise each hash every event
        of a backlog (a site that has just received a peer's log), one of them in vain."""
        sealed = 0
        while limit is None or sealed < limit:
            batch = SEAL_BATCH if limit is None else min(SEAL_BATCH, limit - sealed)
            added = self._seal_batch(batch)
            if added is None:
                if yield_on_race:
                    break
                continue
            if added == 0:
                break
            sealed += added
        self._checkpoint_if_due(force=False)
        return sealed

    def _seal_batch(self, batch: int) -> int | None:
        """Seal up to ``batch`` events after the head: how many, or None when another
        sealer moved the head meanwhile (nothing was written)."""
        position, link = self.head()
        rows = self.log.select_notifications(start=position, limit=batch, inclusive_of_start=False)
        if not rows:
            return 0
        chain: list[tuple[int, str]] = []
        links: list[bytes] = []
        for row in rows:
            digest = row_digest(row)
            link = next_link(link, int(row.id), digest)
            chain.append((int(row.id), digest.hex()))
            links.append(link)
        with self.db.transaction() as c:
            moved = c.execute(
                "UPDATE audit_seal SET position = ?, link = ? WHERE name = ? AND position = ?",
                (chain[-1][0], link.hex(), SEAL_NAME, position),
            ).rowcount
            if moved != 1:
                return None  # another sealer took this batch
            c.executemany("INSERT INTO audit_chain (position, digest) VALUES (?, ?)", chain)
            # Checkpoints fall every ``checkpoint_every`` events, also inside a batch.
            for (at, _), link_at in zip(chain, links, strict=True):
                self._maybe_checkpoint(c, at, link_at, force=False, by_count_only=True)
            self._maybe_checkpoint(c, chain[-1][0], link, force=False)
        return len(chain)

    def checkpoint(self) -> None:
        """Sign a checkpoint at the sealed head now (if it moved since the last one)."""
        self._checkpoint_if_due(force=True)

    def _checkpoint_if_due(self, *, force: bool) -> None:
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT position, link FROM audit_seal WHERE name = ?", (SEAL_NAME,)
            ).fetchone()
            if row is not None:
                self._maybe_checkpoint(c, int(row[0]), bytes.fromhex(row[1]), force=force)

    def _maybe_checkpoint(
        self, c: Cursor, position: int, link: bytes, *, force: bool, by_count_only: bool = False
    ) -> None:
        last = c.execute(
            "SELECT checkpoint_position, checkpoint_at FROM audit_seal WHERE name = ?",
            (SEAL_NAME,),
        ).fetchone()
        assert last is not None
        last_position, last_at = int(last[0]), float(last[1])
        if position <= last_position:
            return
        now = self._now()
        due = (
            force
            or position - last_position >= self.checkpoint_every
            or (not by_count_only and now - last_at >= self.checkpoint_seconds)
        )
        if not due:
            return
        sealed_at = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        signature = self.notary.sign_detached(checkpoint_statement(position, link, sealed_at))
        c.execute(
            "INSERT INTO audit_checkpoints (position, link, sealed_at, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?)",
            (position, link.hex(), sealed_at, self.notary.key_id, signature.hex()),
        )
        c.execute(
            "UPDATE audit_seal SET checkpoint_position = ?, checkpoint_at = ? WHERE name = ?",
            (position, now, SEAL_NAME),
        )

    # -- verifying -------------------------------------------------------------------

    def verify(
        self, *, max_problems: int = 50, progress: Callable[[int], None] | None = None
    ) -> AuditReport:
        """Recompute the chain from the stored log and compare it with what was sealed
        (``ChainVerifier.verify``: what it names, at most ``max_problems``). Read-only."""
        verifier = ChainVerifier(self.db, self.log, self.notary)
        return verifier.verify(max_problems=max_problems, progress=progress)

    def _checkpoints(self) -> list[tuple[int, str, str, str, str]]:
        # NOTE: the integration tests read the signed checkpoints through this.
        return read_checkpoints(self.db)
