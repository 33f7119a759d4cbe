"""The audit chain's format: what is hashed, how links chain, what a checkpoint signs,
the three tables that hold them, and the ports the chain reads and signs through.

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
- ``audit_seal (name, position, link, ...)``: the sealer's head (``chain.py``).

A change to anything here (the domain strings, the packing, the statement) breaks every
chain already sealed: it is a persisted schema.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from cargohold.domain.ports import Database

SEAL_NAME = "log"
GENESIS = bytes(32)
_DOMAIN = b"cargohold.audit.v1\x00"
_CHECKPOINT_DOMAIN = b"cargohold.audit.checkpoint.v1\n"

TABLES = (
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


def read_head(db: Database) -> tuple[int, bytes]:
    """The sealed head: the last sealed position and the link there."""
    with db.transaction(write=False) as c:
        row = c.execute(
            "SELECT position, link FROM audit_seal WHERE name = ?", (SEAL_NAME,)
        ).fetchone()
    if row is None:
        raise RuntimeError("the audit chain's tables are missing (create_tables)")
    return int(row[0]), bytes.fromhex(row[1])


def read_checkpoints(db: Database) -> list[tuple[int, str, str, str, str]]:
    """Every checkpoint, by position: ``(position, link hex, sealed_at, key_id, signature
    hex)``, as stored (not checked)."""
    with db.transaction(write=False) as c:
        rows = c.execute(
            "SELECT position, link, sealed_at, key_id, signature FROM audit_checkpoints"
            " ORDER BY position"
        ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]
