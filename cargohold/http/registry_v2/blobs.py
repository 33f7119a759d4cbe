"""Blobs and blob uploads: ``/v2/<name>/blobs/<digest>`` and ``/v2/<name>/blobs/uploads/``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, Protocol

import falcon

from cargohold.commands.pull_through import PullThrough
from cargohold.commands.registry import ContentGuard, RegistryService
from cargohold.commands.uploads import UploadService
from cargohold.domain.errors import BlobUnknown, DigestInvalid, RangeInvalid, RepositoryUnknown
from cargohold.domain.ports import BlobStore
from cargohold.domain.values import Digest, RepositoryName
from cargohold.http.registry_v2 import headers as h
from cargohold.http.registry_v2.auth import PULL, RegistryAuth
from cargohold.http.registry_v2.context import caller_of
from cargohold.http.registry_v2.errors import V2Error
from cargohold.projections.mirrors import MirrorQueries
from cargohold.projections.queries import RegistryQueries


class RequestBody:
    """A request body as a ``ByteSource``: at most ``length`` bytes of the WSGI input,
    or (``length`` ``None``: a chunked body streamed, see ``http/server/streaming_bodies.py``)
    all of it, the input ending where the body does.

    Like falcon's ``bounded_stream`` (never reads past the declared length, so a server
    whose input is the raw socket cannot block), plus ``readinto``: the blob store then
    fills one buffer for the whole copy instead of a new bytes object per chunk.
    """

    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self._remaining = sys.maxsize if length is None else length
        self._readinto = getattr(stream, "readinto", None)

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        if size == 0:
            return b""
        data = bytes(self._stream.read(size))
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        if len(view) > self._remaining:
            view = view[: self._remaining]
        if not view:
            return 0
        if self._readinto is None:
            data = self.read(len(view))
            view[: len(data)] = data
            return len(data)
        n = int(self._readinto(view) or 0)
        self._remaining -= n
        return n


def _body(req: falcon.Request) -> RequestBody:
    # NOTE: waitress declares a chunked body's length once it has read it all; a chunked
    # body streamed to us ends where the input does (``wsgi.input_terminated``).
    if req.content_length is None and req.env.get("wsgi.input_terminated"):
        return RequestBody(req.stream, None)
    return RequestBody(req.stream, req.content_length or 0)


def _linked_size(queries: RegistryQueries, name: RepositoryName, digest: Digest) -> int:
    size = queries.blob_size(name, digest)
    if size is None:
        if not queries.repository_exists(name):
            raise RepositoryUnknown(f"repository {name} is not known")
        raise BlobUnknown(f"blob {digest} is not in repository {name}")
    return size


class BlobRedirects(Protocol):
    """Where to send a client for a blob this site lacks (``replay/geo_blobs``)."""

    def redirect(self, digest: Digest) -> str | None: ...


class BlobResource:
    """``pull_through`` fetches, for a repository of a cache organisation, a blob it lacks
    (the body is then the whole blob: a ``Range`` is honoured once it is cached);
    ``redirects`` answers a GET of a blob that a geo peer holds and this site does not
    yet with a 307 to the peer."""

    def __init__(
        self,
        queries: RegistryQueries,
        blobs: BlobStore,
        registry: RegistryService,
        pull_through: PullThrough | None = None,
        redirects: BlobRedirects | None = None,
    ) -> None:
        self.queries = queries
        self.blobs = blobs
        self.registry = registry
        self.pull_through = pull_through
        self.redirects = redirects

    def _size(
        self, req: falcon.Request, repo: RepositoryName, d: Digest
    ) -> tuple[int, Iterator[bytes] | None]:
        """The linked blob's size, or the size and bytes of a blob that a cache's
        repository lacks, from its upstream; ``BlobUnknown`` or ``RepositoryUnknown``."""
        size = self.queries.blob_size(repo, d)
        if size is not None:
            return size, None
        fetched = (
            None if self.pull_through is None else self.pull_through.blob(repo, d, caller_of(req))
        )
        if fetched is None:
            return _linked_size(self.queries, repo, d), None
        return fetched

    def on_head(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        repo, d = RepositoryName(name), Digest.parse(digest)
        size, fetched = self._size(req, repo, d)
        if fetched is not None:
            _close(fetched)
        resp.content_type = "application/octet-stream"
        resp.content_length = size
        resp.set_header("Docker-Content-Digest", str(d))
        resp.set_header("Accept-Ranges", "bytes")

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        repo, d = RepositoryName(name), Digest.parse(digest)
        size, fetched = self._size(req, repo, d)
        if fetched is not None:
            resp.content_type = "application/octet-stream"
            resp.set_header("Docker-Content-Digest", str(d))
            resp.content_length = size
            resp.stream = fetched
            return
        elsewhere = None if self.redirects is None else self.redirects.redirect(d)
        if elsewhere is not None:
            resp.status = falcon.HTTP_307
            resp.set_header("Location", elsewhere)
            resp.set_header("Docker-Content-Digest", str(d))
            resp.content_length = 0
            return
        send_blob(req, resp, self.blobs, d, size)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        repo, d = RepositoryName(name), Digest.parse(digest)
        _linked_size(self.queries, repo, d)
        self.registry.unlink_blob(repo, d, caller_of(req))
        resp.status = falcon.HTTP_202
        resp.content_length = 0


def send_blob(
    req: falcon.Request,
    resp: falcon.Response,
    blobs: BlobStore,
    d: Digest,
    size: int,
    *,
    body: bool = True,
) -> None:
    """Answer with blob ``d`` (``size`` bytes), or the single range its ``Range`` header
    asks for (206). Raises ``RangeInvalid`` for one that cannot be satisfied, with the
    ``Content-Range`` header of that answer set."""
    try:
        wanted = h.parse_range(req.get_header("Range"), size)
    except RangeInvalid:
        resp.set_header("Content-Range", f"bytes */{size}")
        raise
    offset, length = wanted if wanted is not None else (0, size)
    resp.content_type = "application/octet-stream"
    resp.set_header("Docker-Content-Digest", str(d))
    resp.set_header("Accept-Ranges", "bytes")
    if wanted is not None:
        resp.status = falcon.HTTP_206
        resp.set_header("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}")
    resp.content_length = length
    if body:
        resp.stream = blobs.read(d, offset, length)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _digest_param(req: falcon.Request) -> Digest:
    value = req.get_param("digest")
    if value is None:
        raise DigestInvalid("the digest query parameter is required")
    return Digest.parse(value)


class UploadsResource:
    """``POST /v2/<name>/blobs/uploads/``: start, monolithic, or mount."""

    def __init__(
        self,
        uploads: UploadService,
        auth: RegistryAuth,
        mirrors: MirrorQueries,
        content_guard: ContentGuard,
    ) -> None:
        self.uploads = uploads
        self.auth = auth
        self.mirrors = mirrors
        self.content_guard = content_guard

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        repo = RepositoryName(name)
        caller = caller_of(req)
        uploads = self.uploads
        mount = req.get_param("mount")
        if mount is not None:
            digest = Digest.parse(mount)
            source = req.get_param("from")

            def may_read(other: RepositoryName) -> bool:
                return self.auth.may(req, other, PULL)

            source_name = RepositoryName(source) if source else None
            if uploads.mount(repo, digest, source_name, caller, may_read):
                self._created(resp, repo, digest)
                return
        elif req.get_param("digest") is not None:
            digest = _digest_param(req)
            uploads.put(repo, _body(req), digest, req.content_length, caller)
            self._created(resp, repo, digest)
            return
        # A repository whose state refuses this caller's writes refuses the upload
        # before it takes any bytes (a mount and a monolithic upload are refused when
        # they link the blob).
        self.mirrors.check_content_write(repo, caller.actor)
        self.content_guard(repo, caller.actor)
        upload_id = uploads.start(repo)
        resp.status = falcon.HTTP_202
        resp.content_length = 0
        h.set_upload_headers(resp, repo, upload_id, 0)

    @staticmethod
    def _created(resp: falcon.Response, repo: RepositoryName, digest: Digest) -> None:
        resp.status = falcon.HTTP_201
        resp.content_length = 0
        resp.set_header("Location", h.blob_location(repo, digest))
        resp.set_header("Docker-Content-Digest", str(digest))


class UploadResource:
    """``/v2/<name>/blobs/uploads/<id>``: PATCH chunks, PUT to finish, GET status, DELETE."""

    def __init__(self, uploads: UploadService) -> None:
        self.uploads = uploads

    def _range(self, req: falcon.Request) -> tuple[int | None, int | None]:
        """(offset, length) of the body from Content-Range / Content-Length."""
        length = req.content_length
        content_range = req.get_header("Content-Range")
        if content_range is None:
            return None, length
        start, end = h.parse_content_range(content_range)
        if length is not None and length != end - start + 1:
            raise V2Error(
                falcon.HTTP_416,
                "BLOB_UPLOAD_INVALID",
                "Content-Range does not match Content-Length",
            )
        return start, end - start + 1

    def _refuse_range(
        self, resp: falcon.Response, repo: RepositoryName, upload_id: str, error: RangeInvalid
    ) -> None:
        size = self.uploads.size(repo, upload_id)
        raise V2Error(
            falcon.HTTP_416,
            "BLOB_UPLOAD_INVALID",
            error.message,
            headers={
                "Location": h.upload_location(repo, upload_id),
                "Range": h.upload_range(size),
                "Docker-Upload-UUID": upload_id,
            },
        ) from error

    def on_patch(
        self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
    ) -> None:
        repo = RepositoryName(name)
        offset, length = self._range(req)
        try:
            size = self.uploads.append(repo, upload_id, _body(req), offset, length)
        except RangeInvalid as e:
            self._refuse_range(resp, repo, upload_id, e)
        resp.status = falcon.HTTP_202
        resp.content_length = 0
        h.set_upload_headers(resp, repo, upload_id, size)

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        repo = RepositoryName(name)
        digest = _digest_param(req)
        offset, length = self._range(req)
        # A last chunk with a length, or sent chunked (its length known once it is read).
        chunked = req.content_length is None and bool(req.env.get("wsgi.input_terminated"))
        try:
            self.uploads.finish(
                repo,
                upload_id,
                digest,
                caller_of(req),
                _body(req) if (length or 0) > 0 or chunked else None,
                offset,
                length,
            )
        except RangeInvalid as e:
            self._refuse_range(resp, repo, upload_id, e)
        resp.status = falcon.HTTP_201
        resp.content_length = 0
        resp.set_header("Location", h.blob_location(repo, digest))
        resp.set_header("Docker-Content-Digest", str(digest))

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        repo = RepositoryName(name)
        size = self.uploads.size(repo, upload_id)
        resp.status = falcon.HTTP_204
        h.set_upload_headers(resp, repo, upload_id, size)

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
    ) -> None:
        self.uploads.cancel(RepositoryName(name), upload_id)
        resp.status = falcon.HTTP_204
