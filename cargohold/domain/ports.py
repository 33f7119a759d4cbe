"""Ports: the capabilities the domain needs from the outside world, written as contracts.

Each port is one abstract class; its adapters live under ``cargohold/adapters`` and every
adapter passes the same contract suite under ``tests/contract``. Ports speak domain values
(``Digest``) and domain errors only: no driver type crosses them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cargohold.domain.values import Actor, Digest


class ByteSource(Protocol):
    """Anything with ``read(n) -> bytes`` that returns ``b""`` at end of stream.

    ``read(n)`` may return fewer than ``n`` bytes before the end; a file, a
    ``BytesIO`` and a WSGI ``bounded_stream`` all qualify. An adapter may use the
    source's ``readinto(buffer)`` instead where it has one (same end-of-stream rule).
    """

    def read(self, size: int, /) -> bytes: ...


class BlobStore(ABC):
    """Content-addressed blob storage: streamed in, verified, committed, streamed out.

    A *blob* is committed under its digest (``sha256`` or ``sha512``) and is immutable:
    readers never see a partial blob. Content arrives either in one ``put`` or as a
    staged *upload* (``start_upload``, ``append``..., ``commit``) that survives a process
    restart and can be resumed by another instance over the same storage.

    No method holds a blob whole in memory: content moves in chunks whose size the
    adapter receives in its constructor.

    Errors (from ``cargohold.domain.errors``): ``BlobUnknown``, ``UploadUnknown``,
    ``DigestInvalid``, ``SizeInvalid``, ``RangeInvalid`` for the caller's mistakes, and
    ``StorageError`` when the backing store fails. Errors raised by the caller's own
    stream propagate unchanged. Upload ids that the adapter could not have issued (for
    instance ones containing ``/``) are simply unknown.
    """

    # -- committed blobs -------------------------------------------------------------

    @abstractmethod
    def stat(self, digest: Digest) -> int:
        """The size in bytes of the committed blob ``digest``.

        Raises ``BlobUnknown`` if no such blob is committed.
        """

    @abstractmethod
    def exists(self, digest: Digest) -> bool:
        """Whether the blob ``digest`` is committed. Never raises ``BlobUnknown``."""

    @abstractmethod
    def read(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes ``[offset, offset + length)`` of blob ``digest``, as chunks.

        ``length=None`` means "to the end". The range must lie within the blob:
        ``0 <= offset <= size`` and ``0 <= length <= size - offset``; an empty range
        (``offset == size``, or ``length == 0``) yields nothing. Chunks are at most the
        configured chunk size and never empty.

        Validation is eager: ``BlobUnknown`` (no such blob) and ``RangeInvalid`` (range
        outside the blob) are raised by this call itself, before any chunk is yielded, so
        an HTTP layer can answer 404/416 before it starts a response. If the blob is
        deleted between this call and the first chunk, iteration raises ``BlobUnknown``.
        Close the iterator (or exhaust it) to release the underlying file or connection.
        An adapter may return an iterator that is also a read-only, seekable file over
        exactly that range (positions 0 to the range's length): the filesystem store
        does, so that a WSGI server can send it without buffering.
        """

    @abstractmethod
    def delete(self, digest: Digest) -> bool:
        """Remove the committed blob ``digest``; True if it existed.

        Idempotent: deleting an absent blob returns False and raises nothing. Iterators
        already returned by ``read`` may or may not see the content afterwards.
        """

    @abstractmethod
    def put(
        self,
        stream: ByteSource,
        expected: Digest | None = None,
        expected_size: int | None = None,
    ) -> tuple[Digest, int]:
        """Stream ``stream`` to its end into a new blob; return ``(digest, size)``.

        The content is staged, hashed as it streams, verified and only then committed.
        Without ``expected`` the blob is committed under its ``sha256`` digest; with it,
        under ``expected`` (either algorithm). Committing content that already exists
        is not an error (the result is the same blob).

        Raises ``DigestInvalid`` if the content does not hash to ``expected`` and
        ``SizeInvalid`` if its length differs from ``expected_size``; in both cases
        nothing is committed and the staging is removed.
        """

    # -- staged uploads --------------------------------------------------------------

    @abstractmethod
    def start_upload(self) -> str:
        """Create an empty staged upload and return its id.

        The id comes from the adapter's injected id factory and the start time (see
        ``uploads``) from its injected clock.
        """

    @abstractmethod
    def append(
        self, upload_id: str, stream: ByteSource, offset: int, length: int | None = None
    ) -> int:
        """Append ``stream`` to upload ``upload_id`` at ``offset``; return the new size.

        ``offset`` must equal the upload's current size (appends are strictly
        sequential), else ``RangeInvalid``, which the HTTP layer answers with 416 and
        the current size. With ``length``, exactly ``length`` bytes are read from the
        stream (anything after them is left unread); without it, the stream is read to
        its end. An empty append is allowed and changes nothing.

        Raises ``UploadUnknown`` if there is no such upload, and ``SizeInvalid`` if the
        stream ends before ``length`` bytes. If the append fails for any reason the
        upload keeps its previous size: nothing partial is appended.

        Appends to one upload are meant to be serialised by the caller (one client
        drives one upload); adapters guard against interleaving where they can cheaply.
        """

    @abstractmethod
    def truncate_upload(self, upload_id: str, size: int) -> None:
        """Cut upload ``upload_id`` back to its first ``size`` bytes.

        ``size`` must be the offset at which one of the upload's appends began (or its
        current size); that is how a rejected finishing request takes back the chunk it
        appended. Raises ``RangeInvalid`` for a size beyond the upload (adapters that
        keep appends as separate parts also refuse a size inside one) and
        ``UploadUnknown`` if there is no such upload.
        """

    @abstractmethod
    def upload_size(self, upload_id: str) -> int:
        """The number of bytes staged so far in ``upload_id``.

        Raises ``UploadUnknown`` if there is no such upload.
        """

    @abstractmethod
    def commit(self, upload_id: str, expected: Digest, expected_size: int | None = None) -> int:
        """Verify the staged content of ``upload_id`` and commit it as blob ``expected``.

        Returns the blob's size. The content must hash to ``expected`` (``sha256`` or
        ``sha512``), else ``DigestInvalid``; if ``expected_size`` is given it must equal
        the staged size, else ``SizeInvalid``. On either error the staging is left
        intact, so the client may append more, retry, or cancel.

        Idempotent on content: if the blob already exists (say, two concurrent uploads of
        the same layer), the staged content is still verified, then discarded, and the
        commit succeeds. On success the upload is gone: its id is unknown from then on.
        Raises ``UploadUnknown`` if there is no such upload.
        """

    @abstractmethod
    def cancel(self, upload_id: str) -> None:
        """Discard upload ``upload_id`` and its staged content.

        Raises ``UploadUnknown`` if there is no such upload (so a second cancel raises).
        """

    @abstractmethod
    def uploads(self) -> Iterator[tuple[str, float]]:
        """``(upload id, start time)`` for every staged upload, in no particular order.

        Start times are readings of the adapter's injected clock (seconds since the
        epoch by default). A janitor purges expired uploads by calling ``cancel`` on
        them; an upload that vanishes meanwhile makes that ``cancel`` raise
        ``UploadUnknown``, which a janitor ignores.
        """

    # -- operations ------------------------------------------------------------------

    @abstractmethod
    def check(self) -> None:
        """Verify that the store is reachable and writable, leaving nothing behind.

        Called once at startup. Raises ``StorageError`` with a one-line message naming
        what is wrong (missing bucket, unwritable directory, unreachable endpoint).
        """


@dataclass(frozen=True)
class AccessRecord:
    """One pull or login for the audit log: a fact that is not an event (it changes
    nothing), so it goes to a stream of its own (see ``AccessRecorder``).

    ``performer`` is who acted (anonymous for a failed login or an anonymous pull),
    ``metadata`` a JSON-able object that never holds a secret.
    """

    kind: str  # "pull_repo" | "login_success" | "login_failure"
    at: datetime
    performer: Actor
    namespace: str | None = None
    repository: str | None = None
    ip: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class AccessRecorder(Protocol):
    """Where pulls and logins are recorded.

    ``record`` must return at once, whatever the storage is doing (it sits on the pull
    path): adapters buffer and write in batches. A record may be lost only by a crash or
    by a storage outage long enough to overflow the buffer, which the adapter reports.
    """

    def record(self, entry: AccessRecord) -> None: ...


class NoAccessRecorder:
    """Records nothing (tools and tests that do not audit)."""

    def record(self, entry: AccessRecord) -> None:
        return None


# -- the read side's SQL database ------------------------------------------------------

Params = Sequence[Any]


class Cursor(ABC):
    """The part of a DB-API cursor the views use."""

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    @abstractmethod
    def fetchone(self) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def fetchall(self) -> list[tuple[Any, ...]]: ...

    @property
    @abstractmethod
    def rowcount(self) -> int: ...


class Database(ABC):
    """A transactional SQL database: where the views (read models) live.

    Statements are written once with ``?`` placeholders; each driver runs them in its own
    dialect (``adapters/sqlite.py``, ``adapters/postgres.py``) and raises ``StorageError``
    for whatever its driver raises.

    ``transaction(write=True)`` takes the write lock at its start on SQLite (``BEGIN
    IMMEDIATE``), so two writers never deadlock upgrading a read lock; on PostgreSQL it is
    an ordinary READ COMMITTED transaction. Leaving the block normally commits; an
    exception rolls back and propagates (driver errors as ``StorageError``).
    """

    dialect: str

    @abstractmethod
    def transaction(self, *, write: bool = True) -> Any:
        """A context manager yielding a ``Cursor``."""

    @abstractmethod
    def close(self) -> None: ...

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, run on its own (one statement sees one
        consistent snapshot on both databases, so it needs no explicit transaction)."""
        with self.transaction(write=False) as c:
            rows: list[tuple[Any, ...]] = c.execute(sql, params).fetchall()
        return rows

    def check(self) -> None:
        """Raise ``StorageError`` (one line) unless the database answers."""
        with self.transaction(write=False) as c:
            c.execute("SELECT 1")
