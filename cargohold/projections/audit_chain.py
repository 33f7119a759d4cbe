"""Tamper evidence: a hash chain over the stored log, sealed as it grows, signed at checkpoints.

The chain covers the log *as stored*: each row's notification id, originator id and
version, topic and state bytes (ciphertext when a cipher is configured), so it needs no
key to verify and changes if any of them changes::

    digest(n) = sha256("cargohold.audit.v1" | originator id | version | topic | state)
    link(n)   = sha256(link(previous sealed event) | n | digest(n))    link(genesis) = 32 x 00

The digest leaves the position out, so a row found at the wrong position is recognised
as the event sealed elsewhere ("moved"); the link binds every digest to its position.

Three tables in the views database (not views: ``replay rebuild`` never touches them):

- ``audit_chain (position, digest)``: one row per sealed event. It lets ``verify`` name the
  exact event that was altered, deleted or moved, not only the stretch between two
  checkpoints.
- ``audit_checkpoints (position, link, sealed_at, key_id, signature)``: the running link at
  a position, signed (ECDSA P-256) with the registry's signing key, which is not in either
  database. Someone who can write the database can rewrite events *and* their digests, but
  cannot sign a checkpoint: the recomputed chain then disagrees with the next checkpoint.
- ``audit_seal (name, position, link, ...)``: the sealer's head. Sealing advances it by
  compare-and-set in the same transaction as the digests it adds, so several workers or
  nodes can seal at once: one wins each batch, the others re-read.

What it cannot catch: a change made to an event before it is sealed (``serve`` seals
every second; ``replay audit-seal`` does it by hand), and, in the stretch after the last
checkpoint, a rewrite of events together with their recorded digests (checkpoints are
signed every ``checkpoint_every`` events or ``checkpoint_seconds``, whichever comes
first). Both are the usual limits of a chain kept beside the data it protects; publish
the latest checkpoint elsewhere (``audit-verify`` prints it) to close the second.

PostgreSQL may leave gaps in notification ids (a transaction rolled back after taking an
id): a gap is only an error where the chain recorded an event.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cargohold.domain.ports import Cursor, Database

SEAL_NAME = "log"
GENESIS = bytes(32)
_DOMAIN = b"cargohold.audit.v1\x00"
_CHECKPOINT_DOMAIN = b"cargohold.audit.checkpoint.v1\n"
SEAL_BATCH = 2000
READ_BATCH = 5000

_TABLES = (
    "CREATE TABLE IF NOT EXISTS audit_seal (name TEXT PRIMARY KEY, position BIGINT NOT NULL,"
    " link TEXT NOT NULL, checkpoint_position BIGINT NOT NULL, checkpoint_at DOUBLE PRECISION"
    " NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_chain (position BIGINT PRIMARY KEY, digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (position BIGINT PRIMARY KEY,"
    " link TEXT NOT NULL, sealed_at TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)",
)


class StoredRow(Protocol):
    """One stored event, as the event store's recorder returns it."""

    id: int
    originator_id: uuid.UUID | str
    originator_version: int
    topic: str
    state: bytes


class RawLog(Protocol):
    """The stored log, read without decoding (eventsourcing's ``ApplicationRecorder``)."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Any]: ...

    def max_notification_id(self) -> int | None: ...


class Notary(Protocol):
    """Signs and checks checkpoint statements (the registry's ES256 key)."""

    key_id: str

    def sign_detached(self, data: bytes) -> bytes: ...

    def verify_detached(self, data: bytes, signature: bytes) -> bool: ...


def row_digest(row: StoredRow) -> bytes:
    originator = row.originator_id
    if not isinstance(originator, uuid.UUID):
        originator = uuid.UUID(str(originator))
    topic = row.topic.encode()
    state = bytes(row.state)
    return hashlib.sha256(
        _DOMAIN
        + originator.bytes
        + struct.pack(">Q", row.originator_version)
        + struct.pack(">I", len(topic))
        + topic
        + struct.pack(">Q", len(state))
        + state
    ).digest()


def next_link(link: bytes, position: int, digest: bytes) -> bytes:
    return hashlib.sha256(link + struct.pack(">Q", position) + digest).digest()


def checkpoint_statement(position: int, link: bytes, sealed_at: str) -> bytes:
    return _CHECKPOINT_DOMAIN + f"{position}\n{link.hex()}\n{sealed_at}\n".encode()


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
            for statement in _TABLES:
                c.execute(statement)
            c.execute(
                "INSERT INTO audit_seal (name, position, link, checkpoint_position,"
                " checkpoint_at) SELECT ?, 0, ?, 0, ? WHERE NOT EXISTS"
                " (SELECT 1 FROM audit_seal WHERE name = ?)",
                (SEAL_NAME, GENESIS.hex(), self._now(), SEAL_NAME),
            )

    # -- sealing ---------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT position, link FROM audit_seal WHERE name = ?", (SEAL_NAME,)
            ).fetchone()
        if row is None:
            raise RuntimeError("the audit chain's tables are missing (create_tables)")
        return int(row[0]), bytes.fromhex(row[1])

    def seal(self, *, limit: int | None = None) -> int:
        """Add every stored event after the sealed head to the chain (at most ``limit``);
        sign a checkpoint when one is due. Returns the number of events sealed.

        Safe to call from several processes at once: a batch another sealer got to first
        is re-read, never sealed twice."""
        sealed = 0
        while limit is None or sealed < limit:
            batch = SEAL_BATCH if limit is None else min(SEAL_BATCH, limit - sealed)
            added = self._seal_batch(batch)
            if added == 0:
                break
            sealed += added
        self._checkpoint_if_due(force=False)
        return sealed

    def _seal_batch(self, batch: int) -> int:
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
                return len(chain)  # another sealer took this batch; the loop re-reads
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
        """Recompute the chain from the stored log and compare it with what was sealed.

        Names every altered, moved (reordered or swapped), deleted or inserted event, any
        stretch where the recorded chain no longer leads to a signed checkpoint, and any
        checkpoint whose signature fails. Read-only."""
        report = AuditReport()
        sealed_position, _ = self.head()
        report.sealed_position = sealed_position
        checkpoints = self._checkpoints()
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

    def _checkpoints(self) -> list[tuple[int, str, str, str, str]]:
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT position, link, sealed_at, key_id, signature FROM audit_checkpoints"
                " ORDER BY position"
            ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

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
