"""The audit log over HTTP (QUAY-API.md section 10).

=========================================================  ============  ==========================
path (each also ``/aggregatelogs`` and ``/exportlogs``)    who           scope
=========================================================  ============  ==========================
GET /repository/{ns}/{repo}/logs                           repo admin    repo:admin
GET /organization/{org}/logs                               org admin     org:admin (or superuser)
GET /user/logs                                             the user      user:admin (own namespace)
GET /superuser/logs                                        superuser     super:user
=========================================================  ============  ==========================

Query (all optional):

- ``starttime``, ``endtime``: ``MM/DD/YYYY`` in UTC; ``endtime`` is inclusive (its whole
  day). Defaults: now - 1 day .. today + 1 day. Unlike Quay, an unparseable date is 400
  (Quay silently falls back to the default, which shows an auditor other dates than the
  ones asked for); start after end is 400, as in Quay.
- ``performer``: only entries by this user or robot (Quay: org and user logs; here on
  every scope).
- ``kind``: only these kinds, repeated or comma-separated; an unknown kind is 400.
- ``next_page``: the token of the previous page (20 entries a page, newest first; keyset
  pagination, so a deep page costs what the first does). A bad token is 400.

``logs`` answers ``{start_time, end_time, logs: [{kind, metadata, ip, datetime, site,
performer?, namespace?}], next_page?}``: ``site`` is the id of the site where the entry's
change was made (its event's origin, with geo peers; beyond Quay, which has no sites),
``performer`` is absent for anonymous actions, ``namespace`` present only on superuser
logs, ``next_page`` only when there is more.
``aggregatelogs`` answers ``{"aggregated": [{kind, count, datetime}]}`` (per kind per UTC
day). ``exportlogs`` (GET, or POST as Quay; a POST body is ignored: there is no callback,
the answer *is* the export) streams every matching entry as JSON lines
(``application/x-ndjson``, newest first), each with every column: ``source`` (``log`` or
``access``), ``position`` (the event's notification id, log entries only), ``kind``,
``time``, ``namespace``, ``repository``, ``performer``, ``ip``, ``request_id``,
``metadata``, ``site``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon

from cargohold.domain.identity import ApiScope, RepositoryRole
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import rfc2822
from cargohold.http.api_v1.request import encode_page_token, identity_of, page_after, send
from cargohold.projections.audit.kinds import ALL_KINDS
from cargohold.projections.audit.queries import AuditQueries, Key, LogEntry, LogFilter

PAGE_SIZE = 20
MAX_PERFORMER = 255
_DATE_FORMAT = "%m/%d/%Y"


# -- query parsing -------------------------------------------------------------------------


def _date(req: falcon.Request, name: str) -> datetime | None:
    value = req.get_param(name)
    if value is None or not value.strip():
        return None
    try:
        return datetime.strptime(value.strip(), _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise invalid_request(
            f"query parameter '{name}' must be a date as MM/DD/YYYY (UTC): {value[:40]!r}"
        ) from None


def time_range(req: falcon.Request, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` from ``starttime``/``endtime`` (see the module docstring)."""
    start = _date(req, "starttime")
    end = _date(req, "endtime")
    if start is None:
        start = now - timedelta(days=1)
    if end is None:
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = end + timedelta(days=1)  # NOTE: the end date is inclusive, as Quay's
    if start > end:
        raise invalid_request("starttime must not be after endtime")
    return start, end


def _kinds(req: falcon.Request) -> frozenset[str] | None:
    raw = req.params.get("kind")
    if raw is None:
        return None
    values = [raw] if isinstance(raw, str) else list(raw)
    kinds = {k.strip() for v in values for k in v.split(",") if k.strip()}
    if not kinds:
        return None
    unknown = sorted(k for k in kinds if k not in ALL_KINDS)
    if unknown:
        shown = ", ".join(repr(k[:60]) for k in unknown[:5])
        raise invalid_request(f"unknown log kind: {shown} (known: {', '.join(sorted(ALL_KINDS))})")
    return frozenset(kinds)


def _performer(req: falcon.Request) -> str | None:
    value = req.get_param("performer")
    if value is None or not value.strip():
        return None
    if len(value) > MAX_PERFORMER:
        raise invalid_request(f"'performer' is longer than {MAX_PERFORMER} characters")
    return value.strip()


def _key_text(key: Key) -> str:
    return ".".join(str(part) for part in key)


def _key_of(text: str) -> Key:
    parts = text.split(".")
    try:
        t, s, a, b = (int(p) for p in parts)
    except ValueError:
        raise invalid_request("invalid next_page token") from None
    if s not in (0, 1):
        raise invalid_request("invalid next_page token")
    return (t, s, a, b)


# -- rendering -----------------------------------------------------------------------------


def _performer_view(entry: LogEntry) -> dict[str, Any] | None:
    if entry.performer_kind == "anonymous":
        return None
    robot = entry.performer_kind == "robot"
    kind = "user" if robot else entry.performer_kind
    return {"kind": kind, "name": entry.performer_name, "is_robot": robot}


def _ms(ms: int) -> str:
    return rfc2822(datetime.fromtimestamp(ms / 1000, UTC)) or ""


def export_line(entry: LogEntry) -> bytes:
    record = {
        "source": entry.source,
        "position": entry.position,
        "kind": entry.kind,
        "time": entry.time,
        "namespace": entry.namespace,
        "repository": entry.repository,
        "performer": {"kind": entry.performer_kind, "name": entry.performer_name},
        "ip": entry.ip,
        "request_id": entry.request_id,
        "metadata": entry.metadata,
        "site": entry.site_id,
    }
    return json.dumps(record, sort_keys=True).encode() + b"\n"


# -- the resources -------------------------------------------------------------------------


class _Logs:
    """The three answers over one scope; subclasses say which scope a request has."""

    #: What the three routes of a scope answer: "logs" | "aggregate" | "export".
    def __init__(self, guard: Guard, queries: AuditQueries, answer: str) -> None:
        self.guard = guard
        self.queries = queries
        self.answer = answer

    def scope(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool]:
        """The base filter (no time or kind yet), the page-token kind, and whether to
        show each entry's namespace. Checks the caller's right."""
        raise NotImplementedError

    def _filter(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool, Any]:
        base, token_kind, show_namespace = self.scope(req, **params)
        start, end = time_range(req, datetime.now(UTC))
        f = LogFilter(
            start_ms=int(start.timestamp() * 1000),
            end_ms=int(end.timestamp() * 1000),
            namespace=base.namespace,
            repository=base.repository,
            performer=_performer(req),
            kinds=_kinds(req),
        )
        return f, token_kind, show_namespace, (start, end)

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        f, token_kind, show_namespace, (start, end) = self._filter(req, **params)
        if self.answer == "aggregate":
            send(
                resp,
                {
                    "aggregated": [
                        {"kind": c.kind, "count": c.count, "datetime": _ms(c.day_ms)}
                        for c in self.queries.aggregate(f)
                    ]
                },
            )
        elif self.answer == "export":
            resp.content_type = "application/x-ndjson"
            resp.stream = self._export(f)
        else:
            self._page(req, resp, f, token_kind, show_namespace, start, end)

    def _export(self, f: LogFilter) -> Iterator[bytes]:
        for entry in self.queries.iterate(f):
            yield export_line(entry)

    def _page(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        f: LogFilter,
        token_kind: str,
        show_namespace: bool,
        start: datetime,
        end: datetime,
    ) -> None:
        after_text = page_after(req, token_kind)
        after = None if after_text is None else _key_of(after_text)
        entries, more = self.queries.page(f, after, PAGE_SIZE)
        logs = []
        for entry in entries:
            item: dict[str, Any] = {
                "kind": entry.kind,
                "metadata": entry.metadata,
                "ip": entry.ip,
                "datetime": _ms(entry.time_ms),
                "site": entry.site_id,
            }
            performer = _performer_view(entry)
            if performer is not None:
                item["performer"] = performer
            if show_namespace and entry.namespace:
                is_org = self.guard.content.organization_exists(entry.namespace)
                item["namespace"] = {"kind": "org" if is_org else "user", "name": entry.namespace}
            logs.append(item)
        body: dict[str, Any] = {
            "start_time": rfc2822(start),
            "end_time": rfc2822(end),
            "logs": logs,
        }
        if more and entries:
            body["next_page"] = encode_page_token(token_kind, _key_text(entries[-1].key))
        send(resp, body)


class RepositoryLogs(_Logs):
    def scope(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool]:
        name = self.guard.repository_name(params["namespace"], params["repo"])
        self.guard.repository(identity_of(req), name, RepositoryRole.ADMIN)
        return LogFilter(0, 0, repository=str(name)), f"logs:repo:{name}", False


class OrganizationLogs(_Logs):
    def scope(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool]:
        org = self.guard.org_admin(identity_of(req), params["org"])
        return LogFilter(0, 0, namespace=str(org)), f"logs:org:{org}", False


class UserLogs(_Logs):
    def scope(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool]:
        user = self.guard.user(identity_of(req), ApiScope.USER_ADMIN)
        return LogFilter(0, 0, namespace=str(user)), f"logs:user:{user}", False


class SuperuserLogs(_Logs):
    def scope(self, req: falcon.Request, **params: str) -> tuple[LogFilter, str, bool]:
        self.guard.superuser(identity_of(req))
        return LogFilter(0, 0), "logs:all", True


class _PostToo:
    """Export accepts POST as Quay's does (the body, a callback, is ignored)."""

    reads_only = True  # NOTE: a POST that writes nothing: open on a read-only registry

    def on_post(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self.on_get(req, resp, **params)  # type: ignore[attr-defined]


def routes(guard: Guard, queries: AuditQueries) -> list[tuple[str, object]]:
    """The /api/v1 routes of this module (three answers per scope)."""
    out: list[tuple[str, object]] = []
    scopes: list[tuple[str, type[_Logs]]] = [
        ("/repository/{namespace}/{repo}", RepositoryLogs),
        ("/organization/{org}", OrganizationLogs),
        ("/user", UserLogs),
        ("/superuser", SuperuserLogs),
    ]
    for prefix, resource in scopes:
        export = type(f"{resource.__name__}Export", (_PostToo, resource), {})
        out.append((f"{prefix}/logs", resource(guard, queries, "logs")))
        out.append((f"{prefix}/aggregatelogs", resource(guard, queries, "aggregate")))
        out.append((f"{prefix}/exportlogs", export(guard, queries, "export")))
    return out
