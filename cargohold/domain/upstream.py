"""The upstream-registry port: what mirroring and the pull-through cache need from another
registry, and the ways that can fail.

``adapters/upstream.py`` implements it over HTTP (the registry protocol, with Basic and
Docker token auth); the commands that copy content depend only on this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from cargohold.domain.values import Digest

#: Docker Hub's registry host; ``docker.io`` references resolve to it.
DOCKER_HUB = "registry-1.docker.io"


def without_scheme(text: str) -> str:
    """``text`` stripped, without a trailing ``/`` or a leading ``https://``/``http://``."""
    text = text.strip().rstrip("/")
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            return text[len(scheme) :]
    return text


def dialled(registry: str) -> str:
    """The host a client dials for ``registry``: Docker Hub's names resolve to its
    registry host."""
    return DOCKER_HUB if registry in ("docker.io", "index.docker.io") else registry


def parse_reference(reference: str) -> tuple[str, str]:
    """``(registry, repository path)`` of an external reference such as
    ``quay.io/org/repo``, ``127.0.0.1:5000/team/app`` or ``alpine`` (Docker Hub, with its
    ``library/`` prefix for official images). Raises ``ValueError`` for one with no
    repository path."""
    ref = without_scheme(reference)
    first, slash, rest = ref.partition("/")
    if not slash and ("." in first or ":" in first or first == "localhost"):
        raise ValueError(f"{reference!r} names a registry but no repository")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", ref
    if not path or any(not part for part in path.split("/")):
        raise ValueError(f"{reference!r} names no repository")
    if any(c in path for c in ":@") or path != path.lower():
        raise ValueError(f"{reference!r}: the repository path is lowercase, with no tag or digest")
    if dialled(registry) != registry:  # docker.io: official images under library/
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return registry, path


class UpstreamError(Exception):
    """The upstream could not give what was asked. ``message`` is fit for an operator's
    eyes and never holds a credential."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class UpstreamUnauthorized(UpstreamError):
    """The upstream refused the credentials (or anonymous access): 401 or 403."""


class UpstreamNotFound(UpstreamError):
    """The repository, tag, manifest or blob is not at the upstream: 404."""


class UpstreamRateLimited(UpstreamError):
    """The upstream kept answering 429 after the client's own backoff was spent;
    ``retry_after`` is the last wait it asked for, in seconds (None if it named none)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """The upstream is unreachable, timed out, or answered 5xx."""


class UpstreamInvalid(UpstreamError):
    """The upstream sent something that is not what it claims: a digest that does not
    match its bytes, a size that differs, a body too large or malformed."""


@dataclass(frozen=True)
class UpstreamManifest:
    """A manifest as the upstream serves it: its exact bytes, its media type (the
    Content-Type), and its digest (computed from ``body``; checked against the
    Docker-Content-Digest header and the digest asked for)."""

    body: bytes
    media_type: str
    digest: Digest


@dataclass(frozen=True)
class UpstreamBlob:
    """A blob being fetched: its size (Content-Length) and its chunks. The iterator
    raises ``UpstreamInvalid`` at its end when the bytes do not hash to the digest
    asked for (so a consumer that stores while it reads must not commit before the
    iterator is exhausted)."""

    size: int
    chunks: Iterator[bytes]


class UpstreamRegistry(Protocol):
    """One upstream registry (``host[:port]``), with its credentials and TLS settings."""

    def ping(self) -> bool:
        """Log in at the upstream's ``/v2/``: True when it accepted the credentials (or
        is open to all), False when it wants a login and none was given; raises
        ``UpstreamUnauthorized`` when it refused the credentials and another
        ``UpstreamError`` when it could not be asked."""

    def check(self, repository: str) -> None:
        """Prove that the credentials may pull ``repository`` (a tags list of one);
        raises an ``UpstreamError`` otherwise."""

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, following the ``Link`` pagination to its end."""

    def manifest(self, repository: str, reference: str) -> UpstreamManifest:
        """The manifest ``reference`` (a tag or a digest) of ``repository``, asking for
        every OCI and Docker manifest and index media type."""

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest ``reference`` names now (a HEAD); None when the upstream has none."""

    def blob(self, repository: str, digest: Digest) -> AbstractContextManager[UpstreamBlob]:
        """Stream blob ``digest``; the context closes the connection."""

    def close(self) -> None:
        """Release the connection pool."""
