"""Verifying the audit chain: recompute it from the stored log, compare it with what was
sealed, and report every difference (``ChainVerifier``, behind ``AuditChain.verify``).

The stored rows and the recorded digests are read in batches and merged by position; a
difference names the event (altered, moved, deleted, inserted), and each checkpoint is
checked on its own stretch (``chain-rewritten``, ``checkpoint-invalid``). The format is
``chain_format.py``'s.

PostgreSQL may leave gaps in notification ids (a transaction rolled back after taking an
id): a gap is only an error where the chain recorded an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cargohold.domain.ports import Database
from cargohold.projections.audit.chain_format import (
    GENESIS,
    Notary,
    RawLog,
    StoredRow,
    checkpoint_statement,
    next_link,
    read_checkpoints,
    read_head,
    row_digest,
)

READ_BATCH = 5000


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong. ``position`` is a notification id."""

    kind: str  # altered | moved | deleted | inserted | chain-rewritten | checkpoint-invalid
    position: int
    detail: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.kind}: {self.detail}"


@dataclass
class AuditReport:
    events: int = 0  # stored events checked against the chain
    sealed_position: int = 0
    unsealed: int = 0  # stored events after the sealed head (not yet covered)
    checkpoints: int = 0
    last_checkpoint: tuple[int, str, str] | None = None  # (position, link hex, sealed_at)
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0  # found beyond the listing limit

    @property
    def intact(self) -> bool:
        return not self.problems


class ChainVerifier:
    """Checks the stored log against the chain sealed in ``db``; read-only."""

    def __init__(self, db: Database, log: RawLog, notary: Notary) -> None:
        self.db = db
        self.log = log
        self.notary = notary

    def verify(
        self, *, max_problems: int = 50, progress: Callable[[int], None] | None = None
    ) -> AuditReport:
        """Recompute the chain from the stored log and compare it with what was sealed.

        Names every altered, moved (reordered or swapped), deleted or inserted event, any
        stretch where the recorded chain no longer leads to a signed checkpoint, and any
        checkpoint whose signature fails. Read-only."""
        report = AuditReport()
        sealed_position, _ = read_head(self.db)
        report.sealed_position = sealed_position
        checkpoints = read_checkpoints(self.db)
        report.checkpoints = len(checkpoints)

        def found(problem: Problem) -> None:
            if len(report.problems) < max_problems:
                report.problems.append(problem)
            else:
                report.more_problems += 1

        recorded_link = GENESIS
        pending = iter(checkpoints)
        checkpoint = next(pending, None)
        previous_checkpoint = 0
        for position, row, recorded in self._merged(sealed_position):
            if recorded is not None:
                recorded_link = next_link(recorded_link, position, recorded)
            if row is not None and recorded is not None:
                report.events += 1
                actual = row_digest(row)
                if actual != recorded:
                    room = len(report.problems) < max_problems
                    moved_from = self._position_of(actual.hex()) if room else None
                    if moved_from is not None and moved_from != position:
                        found(
                            Problem(
                                "moved",
                                position,
                                f"holds the event sealed at position {moved_from} "
                                f"({_describe(row)}): rows were reordered or swapped",
                            )
                        )
                    else:
                        found(Problem("altered", position, f"{_describe(row)} was changed"))
            elif recorded is not None:
                found(Problem("deleted", position, "a sealed event is no longer stored"))
            elif row is not None:
                report.events += 1
                found(
                    Problem(
                        "inserted", position, f"{_describe(row)} is stored but was never sealed"
                    )
                )
            while checkpoint is not None and checkpoint[0] <= position:
                recorded_link = self._check_checkpoint(
                    checkpoint, position, recorded_link, previous_checkpoint, found
                )
                previous_checkpoint = checkpoint[0]
                checkpoint = next(pending, None)
            if progress is not None:
                progress(1)
        while checkpoint is not None:  # checkpoints beyond the sealed head: forged
            found(Problem("checkpoint-invalid", checkpoint[0], "beyond the sealed head"))
            checkpoint = next(pending, None)
        head = self.log.max_notification_id() or 0
        report.unsealed = max(0, head - sealed_position)
        if checkpoints:
            p, link_hex, sealed_at, _, _ = checkpoints[-1]
            report.last_checkpoint = (p, link_hex, sealed_at)
        return report

    def _check_checkpoint(
        self,
        checkpoint: tuple[int, str, str, str, str],
        position: int,
        recorded_link: bytes,
        previous: int,
        found: Callable[[Problem], None],
    ) -> bytes:
        """Check one checkpoint; returns the link to go on from (a genuine checkpoint's
        own, so each stretch between checkpoints is judged on its own)."""
        at, link_hex, sealed_at, key_id, signature_hex = checkpoint
        if key_id != self.notary.key_id:
            found(
                Problem(
                    "checkpoint-invalid",
                    at,
                    f"signed under key {key_id}, not this registry's {self.notary.key_id}",
                )
            )
            return recorded_link
        try:
            signature = bytes.fromhex(signature_hex)
            link = bytes.fromhex(link_hex)
        except ValueError:
            found(Problem("checkpoint-invalid", at, "the checkpoint row is not hex"))
            return recorded_link
        if not self.notary.verify_detached(checkpoint_statement(at, link, sealed_at), signature):
            found(Problem("checkpoint-invalid", at, "its signature does not verify"))
            return recorded_link
        if at != position or link != recorded_link:
            found(
                Problem(
                    "chain-rewritten",
                    at,
                    f"the recorded chain between positions {previous} and {at} does not "
                    "lead to this signed checkpoint: events and their sealed digests were "
                    "changed together, or sealed digests were removed",
                )
            )
        return link

    def _position_of(self, digest_hex: str) -> int | None:
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT MIN(position) FROM audit_chain WHERE digest = ?", (digest_hex,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _recorded(self, after: int, limit: int, stop: int) -> list[tuple[int, bytes]]:
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT position, digest FROM audit_chain WHERE position > ? AND position <= ?"
                " ORDER BY position LIMIT ?",
                (after, stop, limit),
            ).fetchall()
        return [(int(p), bytes.fromhex(d)) for p, d in rows]

    def _stored(self, after: int, limit: int, stop: int) -> Sequence[StoredRow]:
        return self.log.select_notifications(
            start=after, limit=limit, stop=stop, inclusive_of_start=False
        )

    def _merged(self, stop: int) -> Iterator[tuple[int, StoredRow | None, bytes | None]]:
        """Stored rows and recorded digests up to ``stop``, merged by position."""
        rows = _Batches(lambda after: list(self._stored(after, READ_BATCH, stop)), lambda r: r.id)
        recorded = _Batches(lambda after: self._recorded(after, READ_BATCH, stop), lambda r: r[0])
        row, rec = rows.next(), recorded.next()
        while row is not None or rec is not None:
            row_at = int(row.id) if row is not None else None
            rec_at = rec[0] if rec is not None else None
            if rec_at is None or (row_at is not None and row_at < rec_at):
                assert row is not None and row_at is not None
                yield row_at, row, None
                row = rows.next()
            elif row_at is None or rec_at < row_at:
                assert rec is not None
                yield rec_at, None, rec[1]
                rec = recorded.next()
            else:
                assert row is not None and rec is not None
                yield rec_at, row, rec[1]
                row, rec = rows.next(), recorded.next()


class _Batches:
    """Iterates items fetched in batches by ``fetch(after_key)``; ``None`` at the end."""

    def __init__(self, fetch: Callable[[int], list[Any]], key: Callable[[Any], int]) -> None:
        self._fetch = fetch
        self._key = key
        self._items: list[Any] = []
        self._index = 0
        self._after = 0
        self._done = False

    def next(self) -> Any:
        if self._index >= len(self._items):
            if self._done:
                return None
            self._items = self._fetch(self._after)
            self._index = 0
            if not self._items:
                self._done = True
                return None
            self._after = int(self._key(self._items[-1]))
        item = self._items[self._index]
        self._index += 1
        return item


def _describe(row: StoredRow) -> str:
    topic = row.topic.rsplit(":", 1)[-1]
    return f"{topic} v{row.originator_version} of {row.originator_id}"
