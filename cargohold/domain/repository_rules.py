"""The checks the ``Repository`` aggregate's guards make, as pure functions of its state.

Each raises the typed error its command documents, before any event exists
(``domain/repository.py``): which references a pushed manifest may lack
(``SparsePolicy``, ``check_references``), who may hold an explicit grant
(``check_grantee``), and which tag expirations are valid (``checked_expiration``).
"""

from __future__ import annotations

import enum
from collections.abc import Container
from datetime import UTC, datetime

from cargohold.domain.clock import epoch_ms
from cargohold.domain.errors import (
    AccessDenied,
    InvalidInput,
    ManifestBlobUnknown,
    PermissionInvalid,
)
from cargohold.domain.identity import Principal, PrincipalKind
from cargohold.domain.manifest import ParsedManifest
from cargohold.domain.values import Actor, ActorKind, Digest, RepositoryName


class RepositoryState(enum.Enum):
    """Quay's repository states. NORMAL: writable by its writers; READ_ONLY: no content
    write at all; MIRROR: content is written by its mirror only (the sync worker, or a
    client holding the mirror's robot credentials)."""

    NORMAL = "NORMAL"
    READ_ONLY = "READ_ONLY"
    MIRROR = "MIRROR"


class RepositoryStateDenied(AccessDenied):
    """A content write to a repository whose state refuses it."""


def check_content_write(
    repository: RepositoryName, state: str, actor: Actor, mirror_robot: str | None
) -> None:
    """Raise ``RepositoryStateDenied`` unless ``actor`` may change the content (blobs,
    manifests, tags) of ``repository`` in ``state``. The system's own sweeps (tag
    expiry) are not content writes of anyone, and are never refused."""
    if actor.kind is ActorKind.SYSTEM or state == RepositoryState.NORMAL.name:
        return
    if state == RepositoryState.READ_ONLY.name:
        raise RepositoryStateDenied(f"repository {repository} is read-only")
    if actor.kind is ActorKind.MIRROR:
        return
    if actor.kind is ActorKind.ROBOT and mirror_robot is not None and actor.name == mirror_robot:
        return
    robot = f" robot {mirror_robot}" if mirror_robot else " robot"
    raise RepositoryStateDenied(
        f"repository {repository} is a mirror: only its mirror{robot} may write to it"
    )


class SparsePolicy(enum.Enum):
    """Which references of a pushed manifest may be missing from the repository.

    The distribution spec lets a registry accept or reject (with MANIFEST_BLOB_UNKNOWN)
    a manifest whose descriptors point at content it lacks; this is that choice. The
    config blob is required under every policy but ``UPSTREAM``.
    """

    STRICT = "strict"  # every layer and every child of an index must be there
    INDEX = "index"  # an index may name children that were never pushed (partial mirrors)
    ALL = "all"  # image layers may be missing too
    # Nothing need be there yet: a pull-through cache records the manifest it fetched and
    # fetches what it names when a client asks (never an operator's setting).
    UPSTREAM = "upstream"


def check_references(
    manifest: ParsedManifest,
    blobs: Container[Digest],
    manifests: Container[Digest],
    sparse: SparsePolicy,
    repository: RepositoryName,
) -> None:
    """Raise ``ManifestBlobUnknown`` naming the config, or (unless ``sparse`` allows it)
    the first layer that is not in ``blobs``, or the first child of an index that is not
    in ``manifests``. Descriptors with ``urls`` (foreign layers) are exempt, and the
    ``subject`` need not exist (the spec lets referrers arrive first)."""
    config = manifest.config
    if sparse is SparsePolicy.UPSTREAM:
        return
    if config is not None and not config.urls and config.digest not in blobs:
        raise ManifestBlobUnknown(
            f"config {config.digest} of manifest {manifest.digest} "
            f"is not in repository {repository}"
        )
    if sparse is not SparsePolicy.ALL:  # INDEX or STRICT
        for blob in manifest.layers:
            if not blob.urls and blob.digest not in blobs:
                raise ManifestBlobUnknown(
                    f"blob {blob.digest} referenced by manifest {manifest.digest} "
                    f"is not in repository {repository}"
                )
    if sparse is SparsePolicy.STRICT:
        for child in manifest.manifests:
            if child.digest not in manifests:
                raise ManifestBlobUnknown(
                    f"manifest {child.digest} referenced by index {manifest.digest} "
                    f"is not in repository {repository}"
                )


def check_grantee(principal: Principal, repository: RepositoryName) -> None:
    """Raise ``PermissionInvalid`` for the namespace's own user (always admin implicitly)
    and for a team or robot of another namespace."""
    namespace = repository.namespace
    if principal.kind is PrincipalKind.USER and principal.name == namespace:
        raise PermissionInvalid(
            f"{principal} owns namespace {namespace}: the namespace owner is always admin"
        )
    if principal.kind is not PrincipalKind.USER and principal.namespace != namespace:
        raise PermissionInvalid(
            f"{principal} belongs to another namespace than repository {repository}"
        )


def checked_expiration(expires_at: datetime | None, now_ms: int) -> datetime | None:
    """``expires_at`` in UTC (``None`` stays ``None``: never). Raises ``InvalidInput`` for
    an expiration that is naive or not after ``now_ms``."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None or epoch_ms(expires_at) <= now_ms:
        raise InvalidInput("a tag's expiration must be an aware time in the future")
    return expires_at.astimezone(UTC)
