"""Parsing the ``Authorization`` header, and the caller's address.

Only the shape is checked here; whether the credentials are good is the
``Authenticator``'s business. A header that cannot be parsed counts as bad credentials
(401), never as anonymous, so a client with a broken credential helper hears about it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import falcon

from cargohold.domain.errors import CredentialsInvalid

MAX_HEADER = 8192


@dataclass(frozen=True)
class Basic:
    username: str
    secret: str


@dataclass(frozen=True)
class Bearer:
    token: str


def credentials_of(req: falcon.Request) -> Basic | Bearer | None:
    """The credentials a request carries, or ``None``; ``CredentialsInvalid`` if malformed."""
    header = req.get_header("Authorization")
    if header is None or not header.strip():
        return None
    if len(header) > MAX_HEADER:
        raise CredentialsInvalid("authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CredentialsInvalid("malformed basic credentials") from None
        username, found, secret = decoded.partition(":")
        if not found or not username:
            raise CredentialsInvalid("malformed basic credentials")
        return Basic(username, secret)
    if scheme.lower() == "bearer" and value:
        return Bearer(value)
    raise CredentialsInvalid("unsupported authorization scheme")


def address_of(req: falcon.Request) -> str:
    """The peer address. NOTE: ``X-Forwarded-For`` is not trusted: behind a proxy every
    caller shares the proxy's address, which throttles more, never less."""
    return str(req.remote_addr or "unknown")
