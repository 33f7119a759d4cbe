"""Repository mirrors and states (QUAY-API.md section 12; Quay's ``endpoints/api/mirror.py``).

All need repository admin.

- ``GET /repository/{ns}/{repo}/mirror`` -> 200, Quay's fields plus ``mirror_type``
  ("PULL"), ``sync_status``, ``sync_expiration_date``, ``sync_retries_remaining``, and
  ours: ``sync_progress`` (``tags_total``, ``tags_synced``, ``tags_failed``,
  ``tags_removed``, ``bytes``) and ``last_error``. The password is never returned.
  No mirror -> 404.
- ``POST .../mirror`` -> 201 ``""``. Required: ``external_reference``, ``sync_interval``,
  ``sync_start_date``, ``root_rule``, ``skopeo_timeout_interval`` and (Quay: a 500 when
  absent) ``robot_username``. A mirror there already -> 409.
- ``PUT .../mirror`` -> 201 ``""``: any subset of the fields.
- ``POST .../mirror/sync-now`` -> 204; ``POST .../mirror/sync-cancel`` -> 204. No mirror ->
  404; a sync running (sync-now) or none to cancel -> 409 (Quay: 404 for both, which
  reads as "no mirror").
- ``PUT /repository/{ns}/{repo}/changestate`` ``{state}`` -> ``{"success": true}``.

Dates are ``YYYY-MM-DDTHH:MM:SSZ`` exactly, as Quay's; anything else is 400.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon

from cargohold.commands.mirrors import MirrorInput, MirrorService
from cargohold.domain.errors import InvalidInput
from cargohold.domain.identity import RepositoryRole
from cargohold.domain.mirror import (
    ARCHITECTURES,
    MIN_TIMEOUT_S,
    Mirror,
    MirrorBusy,
    MirrorExists,
)
from cargohold.domain.repository_rules import RepositoryState
from cargohold.domain.values import RepositoryName
from cargohold.http.api_v1.errors import ApiError, invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.request import Body, caller_of, identity_of, no_content, read_body, send

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_INTERVAL_S = 10 * 365 * 24 * 3600
MAX_GLOBS = 100


def _conflict(error: Exception) -> ApiError:
    return ApiError(409, "conflict", str(error))


def parse_date(text: object, field: str = "sync_start_date") -> int:
    """Epoch ms of a Quay mirror date; 400 for anything but ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not isinstance(text, str):
        raise invalid_request(f"'{field}' must be a date like 2026-12-07T15:00:00Z")
    try:
        moment = datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise invalid_request(
            f"'{field}' must be a date like 2026-12-07T15:00:00Z, not {text[:40]!r}"
        ) from None
    return int(moment.timestamp() * 1000)


def format_date(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(DATE_FORMAT)


def view(mirror: Mirror) -> dict[str, Any]:
    """Quay's mirror object (and our progress fields)."""
    s = mirror.settings
    proxy = s.proxy or {}
    return {
        "is_enabled": mirror.enabled,
        "mirror_type": "PULL",
        "external_reference": s.external_reference,
        "external_registry_username": s.username,
        "external_registry_config": {
            "verify_tls": s.verify_tls,
            "unsigned_images": s.unsigned_images,
            "proxy": {
                "http_proxy": proxy.get("http_proxy"),
                "https_proxy": proxy.get("https_proxy"),
                "no_proxy": proxy.get("no_proxy"),
            },
        },
        "sync_interval": s.sync_interval_s,
        "sync_start_date": format_date(mirror.next_sync_ms),
        "sync_expiration_date": format_date(mirror.expires_ms),
        "sync_retries_remaining": mirror.retries,
        "sync_status": mirror.status,
        "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": list(s.tag_globs)},
        "robot_username": s.robot,
        "skopeo_timeout_interval": s.timeout_s,
        "architecture_filter": list(s.architectures),
        "sync_progress": {
            "tags_total": mirror.tags_total,
            "tags_synced": mirror.synced,
            "tags_failed": mirror.failed,
            "tags_removed": mirror.removed,
            "bytes": mirror.bytes,
        },
        "last_error": mirror.last_error,
    }


def _fields(body: Body, *, partial: bool) -> dict[str, Any]:
    """Our ``MirrorInput`` fields from Quay's body (those present, when ``partial``)."""
    out: dict[str, Any] = {}
    required = not partial

    def present(key: str) -> bool:
        return required or key in body.data

    if present("external_reference"):
        out["external_reference"] = body.text("external_reference", max_length=2048)
    if present("sync_interval"):
        value = body.optional_int("sync_interval", minimum=0, maximum=MAX_INTERVAL_S)
        if value is None:
            raise invalid_request("missing required field 'sync_interval'")
        out["sync_interval_s"] = value
    if present("sync_start_date"):
        if body.data.get("sync_start_date") is None:
            raise invalid_request("missing required field 'sync_start_date'")
        out["sync_start_ms"] = parse_date(body.data["sync_start_date"])
    if present("robot_username"):
        out["robot"] = body.text("robot_username")
    if present("root_rule"):
        rule = body.obj("root_rule")
        kind = rule.text("rule_kind")
        if kind != "tag_glob_csv":
            raise invalid_request("'root_rule.rule_kind' must be tag_glob_csv")
        globs = rule.strings("rule_value", max_items=MAX_GLOBS)
        out["tag_globs"] = tuple(g.strip() for g in globs)
    if present("skopeo_timeout_interval"):
        value = body.optional_int(
            "skopeo_timeout_interval", minimum=MIN_TIMEOUT_S, maximum=MAX_INTERVAL_S
        )
        if value is None:
            raise invalid_request("missing required field 'skopeo_timeout_interval'")
        out["timeout_s"] = value
    if "is_enabled" in body.data:
        enabled = body.optional_bool("is_enabled")
        out["is_enabled"] = True if enabled is None else enabled
    if "external_registry_username" in body.data:
        out["username"] = body.optional_text("external_registry_username") or None
    if "external_registry_password" in body.data:
        out["password"] = body.optional_text("external_registry_password", max_length=4096)
    if body.has("external_registry_config"):
        config = body.obj("external_registry_config")
        for key in ("verify_tls", "unsigned_images"):
            if key in config.data:
                value = config.optional_bool(key)
                if value is not None:
                    out[key] = value
        if "proxy" in config.data:
            if config.data["proxy"] is None:
                out["proxy"] = None
            else:
                proxy = config.obj("proxy")
                given = {
                    k: proxy.optional_text(k, max_length=2048)
                    for k in ("http_proxy", "https_proxy", "no_proxy")
                }
                out["proxy"] = given if any(given.values()) else None
    if "architecture_filter" in body.data:
        archs = body.data["architecture_filter"] or []
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise invalid_request("'architecture_filter' must be a list of strings")
        bad = [a for a in archs if a not in ARCHITECTURES]
        if bad:
            raise invalid_request(
                f"'architecture_filter': {bad[0][:40]!r} is not one of {', '.join(ARCHITECTURES)}"
            )
        out["architectures"] = tuple(dict.fromkeys(archs))
    return out


class _RepositoryAdmin:
    """A resource of one repository that only its admins may use."""

    def __init__(self, guard: Guard, mirrors: MirrorService) -> None:
        self.guard = guard
        self.mirrors = mirrors

    def _admin(self, req: falcon.Request, namespace: str, repo: str) -> RepositoryName:
        """The repository the path names, once the caller proved to be its admin."""
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity_of(req), name, RepositoryRole.ADMIN)
        return name


class MirrorResource(_RepositoryAdmin):
    """``/repository/{namespace}/{repo}/mirror``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self._admin(req, namespace, repo)
        send(resp, view(self.mirrors.get(name)))

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str
    ) -> None:
        name = self._admin(req, namespace, repo)
        fields = _fields(read_body(req), partial=False)
        try:
            self.mirrors.configure(name, MirrorInput(**fields), caller_of(req))
        except MirrorExists as e:
            raise _conflict(e) from None
        send(resp, "", 201)

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self._admin(req, namespace, repo)
        fields = _fields(read_body(req), partial=True)
        self.mirrors.change(name, fields, caller_of(req))
        send(resp, "", 201)


class MirrorSyncNowResource(_RepositoryAdmin):
    """``POST /repository/{namespace}/{repo}/mirror/sync-now``."""

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str
    ) -> None:
        name = self._admin(req, namespace, repo)
        try:
            self.mirrors.sync_now(name, caller_of(req))
        except MirrorBusy as e:
            raise _conflict(e) from None
        no_content(resp)


class MirrorSyncCancelResource(_RepositoryAdmin):
    """``POST /repository/{namespace}/{repo}/mirror/sync-cancel``."""

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str
    ) -> None:
        name = self._admin(req, namespace, repo)
        try:
            self.mirrors.cancel(name, caller_of(req))
        except MirrorBusy as e:
            raise _conflict(e) from None
        no_content(resp)


class ChangeStateResource(_RepositoryAdmin):
    """``PUT /repository/{namespace}/{repo}/changestate``."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self._admin(req, namespace, repo)
        state = read_body(req).choice("state", RepositoryState)
        try:
            self.mirrors.change_state(name, state, caller_of(req))
        except InvalidInput as e:
            raise invalid_request(str(e)) from None
        send(resp, {"success": True})
