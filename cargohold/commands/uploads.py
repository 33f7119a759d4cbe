"""Blob uploads: the OCI push flows, from a started session to a linked blob.

Upload sessions are not domain facts: they live in the blob store's staging area plus a
small session table that says which repository each belongs to. Only a completed blob
becomes an event (``BlobLinked``, through ``RegistryService``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Protocol

from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.errors import BlobUnknown, DigestInvalid, SizeInvalid, UploadUnknown
from cargohold.domain.ports import BlobStore, ByteSource
from cargohold.domain.values import Digest, RepositoryName

# repositories read per step when a mount without ``from`` looks for a readable one
MOUNT_PAGE = 100


class UploadSessions(Protocol):
    """Which repository each staged upload belongs to."""

    def add(self, upload_id: str, repository: RepositoryName, started_at: float) -> None: ...

    def repository_of(self, upload_id: str) -> str | None: ...

    def remove(self, upload_id: str) -> None: ...

    def started_before(self, moment: float) -> list[str]: ...


class BlobLocator(Protocol):
    def blob_size(self, name: RepositoryName, digest: Digest) -> int | None:
        """The blob's size if it is linked into repository ``name``, else None."""

    def repositories_with_blob(
        self, digest: Digest, after: str = "", limit: int | None = None
    ) -> list[str]:
        """Repositories the blob is linked into, in name order, after ``after`` (for
        mounts without ``from``)."""


class UploadService:
    def __init__(
        self,
        blobs: BlobStore,
        sessions: UploadSessions,
        registry: RegistryService,
        locator: BlobLocator,
        *,
        expiry_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs = blobs
        self.sessions = sessions
        self.registry = registry
        self.locator = locator
        self.expiry_seconds = expiry_seconds
        self.clock = clock

    def start(self, name: RepositoryName) -> str:
        upload_id = self.blobs.start_upload()
        self.sessions.add(upload_id, name, self.clock())
        return upload_id

    def _check(self, name: RepositoryName, upload_id: str) -> None:
        if self.sessions.repository_of(upload_id) != str(name):
            raise UploadUnknown(f"no upload {upload_id[:64]!r} in repository {name}")

    def size(self, name: RepositoryName, upload_id: str) -> int:
        self._check(name, upload_id)
        return self.blobs.upload_size(upload_id)

    def append(
        self,
        name: RepositoryName,
        upload_id: str,
        stream: ByteSource,
        offset: int | None,
        length: int | None,
    ) -> int:
        """Append a chunk. ``offset`` None means "at the end" (a streamed PATCH)."""
        self._check(name, upload_id)
        if offset is None:
            offset = self.blobs.upload_size(upload_id)
        return self.blobs.append(upload_id, stream, offset, length)

    def finish(
        self,
        name: RepositoryName,
        upload_id: str,
        digest: Digest,
        caller: Caller,
        stream: ByteSource | None = None,
        offset: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append the optional last chunk, verify, commit and link the blob."""
        self._check(name, upload_id)
        appended_at: int | None = None
        if stream is not None and length != 0:
            if offset is None:
                offset = self.blobs.upload_size(upload_id)
            self.blobs.append(upload_id, stream, offset, length)
            appended_at = offset
        try:
            size = self.blobs.commit(upload_id, digest)
        except (DigestInvalid, SizeInvalid):
            # A rejected request writes nothing: take back the chunk it brought, so the
            # upload is as the client last saw it and may be finished correctly.
            if appended_at is not None:
                self.blobs.truncate_upload(upload_id, appended_at)
            raise
        self.sessions.remove(upload_id)
        self.registry.link_blob(name, digest, caller)
        return size

    def cancel(self, name: RepositoryName, upload_id: str) -> None:
        self._check(name, upload_id)
        self.blobs.cancel(upload_id)
        self.sessions.remove(upload_id)

    def put(
        self,
        name: RepositoryName,
        stream: ByteSource,
        digest: Digest,
        length: int | None,
        caller: Caller,
    ) -> int:
        """A single-request (monolithic) upload."""
        _, size = self.blobs.put(stream, expected=digest, expected_size=length)
        self.registry.link_blob(name, digest, caller)
        return size

    def mount(
        self,
        name: RepositoryName,
        digest: Digest,
        source: RepositoryName | None,
        caller: Caller,
        may_read: Callable[[RepositoryName], bool] = lambda _: True,
    ) -> bool:
        """Link a blob already in another repository; False if it cannot be mounted.

        With ``source`` the blob must be linked there; without it, in any repository.
        Either way only repositories for which ``may_read`` holds count, so a mount never
        reveals (or copies) a blob the caller could not pull.
        """
        # PERF: ask for the one source, or page through the others until one may be
        # read: a common base layer may be linked into tens of thousands of repositories.
        if source is not None:
            found = self.locator.blob_size(source, digest) is not None and may_read(source)
        else:
            found = self._readable_link(digest, may_read)
        if not found or not self.blobs.exists(digest):
            return False
        try:
            self.registry.link_blob(name, digest, caller)
        except BlobUnknown:
            return False
        return True

    def _readable_link(self, digest: Digest, may_read: Callable[[RepositoryName], bool]) -> bool:
        after = ""
        while page := self.locator.repositories_with_blob(digest, after, MOUNT_PAGE):
            if any(may_read(RepositoryName(r)) for r in page):
                return True
            after = page[-1]
        return False

    def purge_expired(self) -> int:
        """Cancel uploads older than the expiry; return how many were removed."""
        cutoff = self.clock() - self.expiry_seconds
        removed = 0
        for upload_id, started in list(self.blobs.uploads()):
            if started < cutoff:
                with contextlib.suppress(UploadUnknown):
                    self.blobs.cancel(upload_id)
                    removed += 1
        for upload_id in self.sessions.started_before(cutoff):
            self.sessions.remove(upload_id)
        return removed
