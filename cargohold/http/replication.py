"""``GET /replication/v1/log?after=N&limit=M``: this site's log for its geo peers
(``replay/geo_feed.py``; ``docs/geo-replication.md``); ``GET|HEAD
/replication/v1/blobs/{digest}``: a blob's bytes, for a peer's blob fetcher or a client
sent here by another site with a signed URL.

Only a peer may read it: ``Authorization: Bearer <peer_token>``, compared in constant
time. Without ``peer_token`` set the endpoint is not there (404); with it, a request
without the token, or with another, is 401 and sees nothing of the log. The page is
gzip-encoded when the client accepts it (``Content-Encoding: gzip``). Errors have
/api/v1's body.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

import falcon

from cargohold.domain.errors import BlobUnknown, DigestInvalid, DigestUnsupported, RangeInvalid
from cargohold.domain.geo import blob_signature
from cargohold.domain.ports import BlobStore
from cargohold.domain.values import Digest
from cargohold.http.api_v1.errors import body
from cargohold.http.registry_v2.blobs import send_blob

REALM = 'Bearer realm="cargohold-replication"'

log = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class LogFeed(Protocol):
    """The pages of this site's log (``replay/geo_feed.LogPages``)."""

    @property
    def media_type(self) -> str: ...

    @property
    def default_limit(self) -> int: ...

    @property
    def max_limit(self) -> int: ...

    def page(self, after: int, limit: int) -> bytes: ...


class ReplicationLogResource:
    def __init__(self, feed: LogFeed, peer_token: str) -> None:
        self.feed = feed
        self._token = peer_token.encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            self._check_peer(req)
            after = _query_int(req, "after", 0, 0, 2**63 - 1)
            limit = _query_int(req, "limit", self.feed.default_limit, 1, self.feed.max_limit)
            try:
                data = self.feed.page(after, limit)
            except Exception as error:  # NOTE: the log failing is the store's, answered 503
                log.error("reading the log for a peer failed", exc_info=error)
                raise _Refused(503, "service_unavailable", "the log cannot be read now") from None
        except _Refused as e:
            _refuse(req, resp, e)
            return
        resp.content_type = self.feed.media_type
        resp.set_header("Vary", "Accept-Encoding")
        if "gzip" in (req.get_header("Accept-Encoding") or "").lower():
            data = gzip.compress(data, compresslevel=5)
            resp.set_header("Content-Encoding", "gzip")
        resp.data = data

    def _check_peer(self, req: falcon.Request) -> None:
        if not self._token:
            raise _Refused(404, "not_found", "this site serves its log to no peer")
        _check_bearer(req, self._token)


def _check_bearer(req: falcon.Request, expected: bytes) -> None:
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise _Refused(401, "invalid_token", "a peer's token is required")


def _refuse(req: falcon.Request, resp: falcon.Response, e: _Refused) -> None:
    resp.status = falcon.code_to_http_status(e.status)
    if e.status == 401:
        resp.set_header("WWW-Authenticate", REALM)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body(req, e.status, e.title, e.detail))


def _query_int(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _Refused(400, "invalid_request", f"'{name}' must be an integer from {low} to {high}")
    return value


# -- blobs ---------------------------------------------------------------------------


class ReplicationBlobResource:
    """``GET /replication/v1/blobs/{digest}``: a blob's bytes for a geo peer, with
    ``Range``. A peer presents ``peer_token``; a client sent here by another site brings
    a signed, short-lived URL instead (``expires``, ``signature``)."""

    def __init__(
        self, blobs: BlobStore, peer_token: str, now_s: Callable[[], float] = time.time
    ) -> None:
        self.blobs = blobs
        self._peer = peer_token
        self._token = peer_token.encode()
        self._now_s = now_s

    def on_get(self, req: falcon.Request, resp: falcon.Response, digest: str) -> None:
        self._send(req, resp, digest, body=True)

    def on_head(self, req: falcon.Request, resp: falcon.Response, digest: str) -> None:
        self._send(req, resp, digest, body=False)

    def _send(self, req: falcon.Request, resp: falcon.Response, digest: str, body: bool) -> None:
        try:
            self._check(req, digest)
            try:
                d = Digest.parse(digest)
                size = self.blobs.stat(d)
            except (DigestInvalid, DigestUnsupported, BlobUnknown):
                raise _Refused(404, "not_found", "this site holds no such blob") from None
            try:
                send_blob(req, resp, self.blobs, d, size, body=body)
            except RangeInvalid as e:
                raise _Refused(416, "range_not_satisfiable", e.message) from None
        except _Refused as e:
            _refuse(req, resp, e)

    def _check(self, req: falcon.Request, digest: str) -> None:
        if not self._token:
            raise _Refused(404, "not_found", "this site serves its blobs to no peer")
        signature, expires = req.get_param("signature"), req.get_param("expires")
        if signature is not None or expires is not None:
            try:
                until = int(expires or "")
            except ValueError:
                until = 0
            good = blob_signature(self._peer, digest, until)
            if until < self._now_s() or not hmac.compare_digest(good, signature or ""):
                raise _Refused(401, "invalid_token", "the signed URL is wrong or expired")
            return
        _check_bearer(req, self._token)
