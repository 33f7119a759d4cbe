"""Tags and the time machine (QUAY-API.md section 8).

- ``GET /repository/{ns}/{repo}/tag/`` (read): the tag *history*, one entry per lifetime
  of a tag (from the push, move or restore that pointed it at a manifest until the move,
  deletion or expiry that ended it), newest start first then by name, as Quay. Query:
  ``onlyActiveTags`` (live and unexpired only), ``specificTag`` (that exact name, as
  Quay), ``page`` (from 1) and ``limit`` (clamped to 1..100, default 50) -> ``{"tags",
  "page", "has_additional"}``. ``end_ts``/``expiration`` are the end of an ended lifetime
  or the expiration of a live one. Every past lifetime is listed, also those beyond the
  namespace's window (which can no longer be restored): the log keeps them all.
- ``PUT …/tag/{tag}`` (write) ``{"manifest_digest"?, "expiration"?}`` -> 201
  ``"Updated"``: points the tag at a manifest of the repository (404 for an unknown one),
  then sets (epoch seconds, in the future) or clears (``null``) its expiration (404 when
  the tag is not live). Unlike Quay, which does the expiration first, one request can
  create a tag and give it an expiration.
- ``DELETE …/tag/{tag}`` (write) -> 204; 404 when the tag is not live.
- ``POST …/tag/{tag}/restore`` (write) ``{"manifest_digest"}`` -> 200 ``{}``: points the
  tag back at a manifest it pointed to within the namespace's window (404 otherwise).

Bad input is 400 ``invalid_request``: a tag name outside ``[\\w][\\w.-]{0,127}``, a
malformed digest, a non-numeric or past expiration, a non-integer page or limit.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import falcon

from cargohold.commands.registry import RegistryService
from cargohold.domain.identity import RepositoryRole
from cargohold.domain.values import Digest, Tag
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    query_bool,
    read_body,
    send,
)
from cargohold.projections.queries import RegistryQueries, TagLifetime

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_PAGE = 1_000_000


def _date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=False)


def tag_view(row: TagLifetime) -> dict[str, Any]:
    """One lifetime in Quay's shape (``start_ts``/``end_ts`` in whole seconds)."""
    view: dict[str, Any] = {"name": row.tag, "reversion": row.reversion}
    if row.start_ms > 0:
        view["start_ts"] = row.start_ms // 1000
    if row.end_ms is not None and row.end_ms > 0:
        view["end_ts"] = row.end_ms // 1000
    view["manifest_digest"] = str(row.digest)
    view["is_manifest_list"] = row.is_manifest_list
    view["size"] = row.size
    if row.start_ms > 0:
        view["last_modified"] = _date(row.start_ms)
    if row.end_ms is not None:
        view["expiration"] = _date(row.end_ms)
    return view


def _query_number(req: falcon.Request, name: str, default: int) -> int:
    value = req.get_param(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise invalid_request(f"query parameter '{name}' must be an integer") from None


def _tag(tag: str) -> Tag:
    return Tag(tag)  # TagInvalid (400) outside the grammar


def _digest(body: dict[str, Any]) -> Digest:
    value = body.get("manifest_digest")
    if not isinstance(value, str):
        raise invalid_request("'manifest_digest' must be a digest string")
    return Digest.parse(value)  # DigestInvalid (400) when malformed


def _expiration(value: Any) -> datetime | None:
    """``null`` or epoch seconds (a number) -> an aware UTC moment."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid_request("'expiration' must be a number of epoch seconds or null")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise invalid_request("'expiration' is out of range") from None


class TagListResource:
    """``GET /repository/{namespace}/{repo}/tag/``."""

    def __init__(self, guard: Guard, queries: RegistryQueries) -> None:
        self.guard = guard
        self.queries = queries

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity_of(req), name, RepositoryRole.READ)
        page = max(1, _query_number(req, "page", 1))
        if page > MAX_PAGE:
            raise invalid_request(f"query parameter 'page' must be at most {MAX_PAGE}")
        limit = min(MAX_LIMIT, max(1, _query_number(req, "limit", DEFAULT_LIMIT)))
        specific = req.get_param("specificTag") or None
        rows, more = self.queries.tag_lifetimes(
            name,
            page=page,
            limit=limit,
            only_active=query_bool(req, "onlyActiveTags", False),
            specific_tag=specific,
        )
        send(resp, {"tags": [tag_view(r) for r in rows], "page": page, "has_additional": more})


class _TagChanges:
    def __init__(self, guard: Guard, registry: RegistryService) -> None:
        self.guard = guard
        self.registry = registry


class TagResource(_TagChanges):
    """``PUT`` and ``DELETE`` on ``/repository/{namespace}/{repo}/tag/{tag}``."""

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, tag: str
    ) -> None:
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity_of(req), name, RepositoryRole.WRITE)
        target = _tag(tag)
        body = read_body(req).data
        caller = caller_of(req)
        if "manifest_digest" in body:
            self.registry.tag(name, target, _digest(body), caller)
        if "expiration" in body:
            expires_at = _expiration(body["expiration"])
            self.registry.set_tag_expiration(name, target, expires_at, caller)
        send(resp, "Updated", status=201)

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, tag: str
    ) -> None:
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity_of(req), name, RepositoryRole.WRITE)
        self.registry.untag(name, _tag(tag), caller_of(req))
        no_content(resp)


class TagRestoreResource(_TagChanges):
    """``POST /repository/{namespace}/{repo}/tag/{tag}/restore``."""

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, tag: str
    ) -> None:
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity_of(req), name, RepositoryRole.WRITE)
        target = _tag(tag)
        body = read_body(req).data
        if body.get("manifest_digest") is None:
            raise invalid_request("Missing manifest_digest")
        self.registry.restore_tag(name, target, _digest(body), caller_of(req))
        send(resp, {})
