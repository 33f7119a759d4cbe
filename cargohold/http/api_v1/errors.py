"""The /api/v1 error table: every failure, in Quay's main error body, from one place.

Body (Quay's ``ApiException``; ``error_message``/``error_type`` are its deprecated
aliases of ``detail``/``title``)::

    {"status": 404, "title": "not_found", "type": "<base>/api/v1/error/not_found",
     "detail": "...", "error_message": "...", "error_type": "not_found"}

Unlike Quay, this is the *only* shape: no ``{"message"}`` or ``{"error"}`` bodies, no 500
for a bad body, never a stack trace. The domain tree (``cargohold.domain.errors``) maps
as follows; the first matching row wins:

===========================  ======  ====================  ==============================
domain error                 status  title                 note
===========================  ======  ====================  ==============================
InvalidInput (all)           400     invalid_request       names, scopes, grants Quay 400s
NotFound (all)               404     not_found             Quay: 400 for unknown robots,
                                                           users and grants; we say 404
ConcurrentModification       429     too_many_requests     + ``Retry-After: 1``; retry
Conflict (NameTaken,         400     invalid_request       as Quay ("already exists",
RepositoryExists, TeamExists,                              "Namespace owner...")
RobotExists, OwnersTeam...)
AuthenticationRequired       401     invalid_token         + ``WWW-Authenticate: Basic``
CredentialsInvalid           401     invalid_token         + ``WWW-Authenticate: Basic``;
                                                           Quay ignores a bad bearer
TokenInvalid                 401     invalid_token         + ``WWW-Authenticate: Basic``
AccessDenied                 403     insufficient_scope    an identity lacking the right
LoginThrottled               429     too_many_requests     + ``Retry-After``
UpstreamThrottled            429     too_many_requests     + the upstream's ``Retry-After``
ReadOnly                     405     read_only             the registry as of a moment
StorageError                 503     service_unavailable   not the caller's fault
===========================  ======  ====================  ==============================

Errors the HTTP layer raises itself (``ApiError``): 400 ``invalid_request`` (malformed
JSON, missing or mistyped fields, bad query values, bad page tokens), 404 ``not_found``
(no such endpoint), 405 ``method_not_allowed`` (+ ``Allow``), 413
``request_too_large``. falcon's own ``HTTPError`` keeps its status and gets a title from
it. Anything else is logged and answered 500 ``internal_error`` in the same shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import falcon

from cargohold.domain import errors as e

log = logging.getLogger(__name__)

REALM = 'Basic realm="cargohold"'


class ApiError(Exception):
    """A failure found by the HTTP layer itself, already in /api/v1 terms."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


def invalid_request(detail: str) -> ApiError:
    return ApiError(400, "invalid_request", detail)


_CHALLENGE = {"WWW-Authenticate": REALM}

# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[e.DomainError], int, str], ...] = (
    (e.InvalidInput, 400, "invalid_request"),
    (e.NotFound, 404, "not_found"),
    (e.ConcurrentModification, 429, "too_many_requests"),
    (e.Conflict, 400, "invalid_request"),
    (e.AuthenticationRequired, 401, "invalid_token"),
    (e.CredentialsInvalid, 401, "invalid_token"),
    (e.TokenInvalid, 401, "invalid_token"),
    (e.AccessDenied, 403, "insufficient_scope"),
    (e.LoginThrottled, 429, "too_many_requests"),
    (e.UpstreamThrottled, 429, "too_many_requests"),
    (e.ReadOnly, 405, "read_only"),
    (e.StorageError, 503, "service_unavailable"),
)

#: What each title means (``GET /api/v1/error/{title}``).
DESCRIPTIONS: Mapping[str, str] = {
    "invalid_request": "The request is malformed or breaks a rule; see the detail.",
    "not_found": "The resource does not exist (or the endpoint does not).",
    "invalid_token": "Credentials are missing, malformed, wrong or expired.",
    "insufficient_scope": "The caller, or its token's scopes, may not do this.",
    "too_many_requests": "Too many attempts, or too busy; retry after Retry-After seconds.",
    "method_not_allowed": "The endpoint does not support this HTTP method.",
    "conflict": "The resource is in a state that refuses this (it exists, or is busy).",
    "read_only": "This registry serves its state as of a past moment and takes no writes.",
    "request_too_large": "The request body exceeds the limit.",
    "service_unavailable": "A backing store failed; retry later.",
    "internal_error": "An unexpected server error; it has been logged.",
}


def from_domain(error: e.DomainError) -> ApiError:
    """``error`` in /api/v1 terms, by the table above."""
    for cls, status, title in _TABLE:
        if isinstance(error, cls):
            headers: dict[str, str] = {}
            if status == 401:
                headers.update(_CHALLENGE)
            retry_after = getattr(error, "retry_after", None)  # the Throttled errors'
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            elif isinstance(error, e.ConcurrentModification):
                headers["Retry-After"] = "1"
            return ApiError(status, title, error.message, headers)
    log.error("domain error missing from the /api/v1 table: %r", error)
    return ApiError(500, "internal_error", "Internal server error")


def _from_falcon(error: falcon.HTTPError) -> ApiError:
    status = error.status_code
    titles = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
    titles[413] = "request_too_large"
    title = titles.get(status, str(error.title or status).lower().replace(" ", "_"))
    detail = str(error.description or error.title or status)
    headers = {k: v for k, v in dict(error.headers or {}).items() if k.lower() != "content-type"}
    return ApiError(status, title, detail, headers)


def body(req: falcon.Request, status: int, title: str, detail: str) -> dict[str, Any]:
    """Quay's error body for ``title``."""
    return {
        "status": status,
        "title": title,
        "type": f"{req.prefix}/api/v1/error/{title}",
        "detail": detail,
        "error_message": detail,
        "error_type": title,
    }


def render_exception(req: falcon.Request, resp: falcon.Response, error: BaseException) -> None:
    """Answer ``error`` in the one body shape. Unexpected errors are logged (with their
    traceback, server side) and answered 500 without one."""
    if isinstance(error, ApiError):
        api = error
    elif isinstance(error, e.DomainError):
        api = from_domain(error)
    elif isinstance(error, falcon.HTTPError):
        api = _from_falcon(error)
    else:
        log.error("unexpected error on %s %s", req.method, req.path, exc_info=error)
        api = ApiError(500, "internal_error", "Internal server error")
    resp.stream = None
    resp.data = None
    resp.media = None
    resp.status = api.status
    for name, value in api.headers.items():
        resp.set_header(name, value)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body(req, api.status, api.title, api.detail))


class ErrorDescriptionResource:
    """``GET /api/v1/error/{error_type}``: what an error ``type`` URL names (Quay's
    ``{type, title, description}``), so that the ``type`` of every body resolves."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, error_type: str) -> None:
        description = DESCRIPTIONS.get(error_type)
        if description is None:
            raise ApiError(404, "not_found", f"no such error type: {error_type[:100]}")
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(
            {
                "type": f"{req.prefix}/api/v1/error/{error_type}",
                "title": error_type,
                "description": description,
            }
        )
