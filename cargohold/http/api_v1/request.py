"""Parsing at the edge of /api/v1: JSON bodies, query values, page tokens; and the
response helpers every resource shares.

Bodies are capped (``MAX_BODY``), must be one JSON object, and are read through ``Body``,
which checks presence, types and enums and answers 400 ``invalid_request`` with a detail
naming the field. Unknown keys are ignored, as Quay's jsonschema does.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any, TypeVar

import falcon

from cargohold.commands.authentication import ANONYMOUS, Identity
from cargohold.commands.unit_of_work import Caller
from cargohold.http.api_v1.errors import ApiError, invalid_request
from cargohold.http.registry_v2.context import request_id_of

MAX_BODY = 1024 * 1024
E = TypeVar("E", bound=enum.Enum)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


# -- who is calling ----------------------------------------------------------------------


def identity_of(req: falcon.Request) -> Identity:
    """The identity the router established for this request."""
    identity: Identity = getattr(req.context, "api_identity", ANONYMOUS)
    return identity


def caller_of(req: falcon.Request) -> Caller:
    """The command caller: the identity's actor under the request id, from the client's
    address."""
    return Caller(identity_of(req).actor, request_id_of(req), req.remote_addr)


# -- responses ---------------------------------------------------------------------------


def send(resp: falcon.Response, payload: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(payload)


def no_content(resp: falcon.Response) -> None:
    resp.status = 204
    resp.text = None


# -- bodies ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_body(req: falcon.Request, *, required: bool = True) -> Body:
    """The request's JSON object. An empty body is ``{}`` unless ``required``."""
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise ApiError(413, "request_too_large", f"request body over {MAX_BODY} bytes")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request_too_large", f"request body over {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise invalid_request("Missing JSON body")
        return Body({})
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        # NOTE: UnicodeDecodeError and JSONDecodeError are ValueErrors; a deeply nested
        # body is a RecursionError. Neither is worth a 500.
        raise invalid_request(f"malformed JSON body: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise invalid_request("the JSON body must be an object")
    return Body(data)


class Body:
    """A JSON object with typed, checked access to its fields. Each accessor raises 400
    ``invalid_request`` naming the field (``where`` prefixes nested ones)."""

    def __init__(self, data: dict[str, Any], where: str = "") -> None:
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}{key}"

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not ``null``."""
        return self.data.get(key) is not None

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise invalid_request(f"missing required field '{self._name(key)}'")
        return value

    def text(self, key: str, *, max_length: int = 255) -> str:
        value = self.optional_text(key, max_length=max_length, required=True)
        assert value is not None
        return value

    def optional_text(
        self, key: str, *, max_length: int = 255, required: bool = False
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid_request(f"'{self._name(key)}' must be a string")
        if len(value) > max_length:
            raise invalid_request(f"'{self._name(key)}' is longer than {max_length} characters")
        return value

    def optional_bool(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, bool):
            raise invalid_request(f"'{self._name(key)}' must be a boolean")
        return value

    def optional_int(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_request(f"'{self._name(key)}' must be an integer")
        if not minimum <= value <= maximum:
            raise invalid_request(f"'{self._name(key)}' must be {minimum} to {maximum}")
        return value

    def choice(self, key: str, kind: type[E]) -> E:
        """A required field whose value is one of ``kind``'s values."""
        value = self._get(key, True)
        for member in kind:
            if member.value == value:
                return member
        allowed = ", ".join(str(m.value) for m in kind)
        raise invalid_request(f"'{self._name(key)}' must be one of: {allowed}")

    def strings(self, key: str, *, max_items: int = 64) -> list[str]:
        """A required, non-empty list of strings."""
        value = self._get(key, True)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_request(f"'{self._name(key)}' must be a list of strings")
        if not value:
            raise invalid_request(f"'{self._name(key)}' must not be empty")
        if len(value) > max_items:
            raise invalid_request(f"'{self._name(key)}' has more than {max_items} items")
        return list(value)

    def obj(self, key: str) -> Body:
        """A required nested object."""
        value = self._get(key, True)
        if not isinstance(value, dict):
            raise invalid_request(f"'{self._name(key)}' must be an object")
        return Body(value, f"{self._name(key)}.")

    def absent(self, key: str, why: str) -> None:
        """Refuse a field we cannot honour (rather than ignore it silently)."""
        if self.has(key):
            raise invalid_request(f"'{self._name(key)}' is not supported: {why}")


# -- query values ------------------------------------------------------------------------


def query_bool(req: falcon.Request, name: str, default: bool) -> bool:
    value = req.get_param(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise invalid_request(f"query parameter '{name}' must be true or false")


def query_int(req: falcon.Request, name: str, *, minimum: int, maximum: int) -> int | None:
    value = req.get_param(name)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise invalid_request(f"query parameter '{name}' must be an integer") from None
    if not minimum <= number <= maximum:
        raise invalid_request(f"query parameter '{name}' must be {minimum} to {maximum}")
    return number


# -- page tokens -------------------------------------------------------------------------
# An opaque ``next_page`` token is the urlsafe base64 of ``{"k": kind, "after": name}``:
# the listing resumes after ``name``. ``kind`` stops a token of one listing from being
# replayed on another. Unlike Quay, a bad token is a 400, never silently page one.


def encode_page_token(kind: str, after: str) -> str:
    raw = json.dumps({"k": kind, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_after(req: falcon.Request, kind: str) -> str | None:
    """Where the page named by ``next_page`` starts (``None``: the first page)."""
    token = req.get_param("next_page")
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        raise invalid_request("invalid next_page token") from None
    if (
        not isinstance(data, dict)
        or data.get("k") != kind
        or not isinstance(data.get("after"), str)
    ):
        raise invalid_request("invalid next_page token")
    after: str = data["after"]
    return after
