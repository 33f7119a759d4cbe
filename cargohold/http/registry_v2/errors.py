"""The /v2 error table: domain errors to OCI error codes and HTTP statuses, in one place.

Bodies follow the distribution spec: ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from cargohold.domain import errors as e

log = logging.getLogger(__name__)


class V2Error(Exception):
    """An OCI error raised by the HTTP layer itself (bad header, unsupported method...)."""

    def __init__(
        self, status: str, code: str, message: str, detail: Any = None, headers: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})


# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[e.DomainError], str, str], ...] = (
    (e.NameInvalid, falcon.HTTP_400, "NAME_INVALID"),
    (e.TagInvalid, falcon.HTTP_400, "MANIFEST_INVALID"),
    (e.ReferenceInvalid, falcon.HTTP_400, "MANIFEST_INVALID"),
    (e.DigestUnsupported, falcon.HTTP_400, "UNSUPPORTED"),
    (e.DigestInvalid, falcon.HTTP_400, "DIGEST_INVALID"),
    (e.MediaTypeInvalid, falcon.HTTP_400, "MANIFEST_INVALID"),
    (e.ManifestBlobUnknown, falcon.HTTP_400, "MANIFEST_BLOB_UNKNOWN"),
    (e.ManifestInvalid, falcon.HTTP_400, "MANIFEST_INVALID"),
    (e.SizeInvalid, falcon.HTTP_400, "SIZE_INVALID"),
    (e.RangeInvalid, falcon.HTTP_416, "BLOB_UPLOAD_INVALID"),
    (e.InvalidInput, falcon.HTTP_400, "UNSUPPORTED"),
    (e.RepositoryUnknown, falcon.HTTP_404, "NAME_UNKNOWN"),
    (e.ManifestUnknown, falcon.HTTP_404, "MANIFEST_UNKNOWN"),
    (e.TagUnknown, falcon.HTTP_404, "MANIFEST_UNKNOWN"),
    (e.BlobUnknown, falcon.HTTP_404, "BLOB_UNKNOWN"),
    (e.UploadUnknown, falcon.HTTP_404, "BLOB_UPLOAD_UNKNOWN"),
    (e.NotFound, falcon.HTTP_404, "NOT_FOUND"),
    (e.ConcurrentModification, falcon.HTTP_429, "TOOMANYREQUESTS"),
    (e.Conflict, falcon.HTTP_409, "DENIED"),
    (e.AccessDenied, falcon.HTTP_403, "DENIED"),
    (e.AuthenticationRequired, falcon.HTTP_401, "UNAUTHORIZED"),
    (e.CredentialsInvalid, falcon.HTTP_401, "UNAUTHORIZED"),
    (e.TokenInvalid, falcon.HTTP_401, "UNAUTHORIZED"),
    (e.LoginThrottled, falcon.HTTP_429, "TOOMANYREQUESTS"),
    (e.UpstreamThrottled, falcon.HTTP_429, "TOOMANYREQUESTS"),
    (e.ReadOnly, falcon.HTTP_405, "UNSUPPORTED"),
    (e.StorageError, falcon.HTTP_503, "UNAVAILABLE"),
)


def classify(error: e.DomainError) -> tuple[str, str]:
    for cls, status, code in _TABLE:
        if isinstance(error, cls):
            return status, code
    return falcon.HTTP_500, "UNKNOWN"  # pragma: no cover - every domain error is listed


def render(resp: falcon.Response, status: str, code: str, message: str, detail: Any = None) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    resp.text = json.dumps({"errors": [body]})


def render_exception(req: falcon.Request, resp: falcon.Response, error: BaseException) -> None:
    """Answer ``error`` in OCI form. Unexpected errors are logged and answered 500
    without a stack trace."""
    if isinstance(error, V2Error):
        for name, value in error.headers.items():
            resp.set_header(name, value)
        render(resp, error.status, error.code, error.message, error.detail)
    elif isinstance(error, e.DomainError):
        status, code = classify(error)
        render(resp, status, code, error.message)
    else:
        log.error("unexpected error on %s %s", req.method, req.path, exc_info=error)
        render(resp, falcon.HTTP_500, "UNKNOWN", "internal error")
