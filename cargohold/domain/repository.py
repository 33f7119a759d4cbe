"""The ``Repository`` aggregate: blobs linked, manifests pushed, tags moved.

Its events are a persisted schema (see DESIGN.md, "The log"): rename one only with
``register_topic``, change its shape only with ``class_version`` and an upcaster. Every
event carries the command's ``EventContext`` fields (``actor``, ``site_id``, ``hlc``,
``request_id``) through the shared base ``Repository.Event``.

Guards run in the public command methods, before any event exists; the events' ``apply``
methods only mutate state, because they also run on replay.

Access: ``permissions`` (principal -> role) and ``visibility`` (PRIVATE until changed:
``Created`` has no visibility field, so every stream, old or new, starts private, as Quay
creates repositories). The aggregate's ``class_version`` 2 upcasts snapshots taken before
these fields existed; version 3 adds ``deleted`` (``Deleted`` empties the repository,
``Recreated`` brings its name back into use, so one stream holds every life of a name).
"""

from __future__ import annotations

import enum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.access import Principal, PrincipalKind, RepositoryRole, Visibility
from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import (
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestUnknown,
    PermissionInvalid,
    PermissionUnknown,
    RepositoryUnknown,
    TagUnknown,
)
from cargohold.domain.manifest import ParsedManifest
from cargohold.domain.values import (
    Descriptor,
    Digest,
    MediaType,
    RepositoryName,
    Tag,
)


class SparsePolicy(enum.Enum):
    """Which references of a pushed manifest may be missing from the repository.

    The distribution spec lets a registry accept or reject (with MANIFEST_BLOB_UNKNOWN)
    a manifest whose descriptors point at content it lacks; this is that choice. The
    config blob is required under every policy.
    """

    STRICT = "strict"  # every layer and every child of an index must be there
    INDEX = "index"  # an index may name children that were never pushed (partial mirrors)
    ALL = "all"  # image layers may be missing too


class Repository(Aggregate):
    """One OCI repository (``<namespace>/<name>``) at one origin site.

    State: ``name``; ``blobs`` (digest -> size) linked into the repository; ``manifests``
    (digest -> media type) pushed to it; ``tags`` (tag -> manifest digest);
    ``permissions`` (principal -> explicit role); ``visibility``.
    """

    # NOTE: v2 added ``permissions`` and ``visibility``; v3 ``deleted``. See the upcasters.
    class_version = 3

    class Event(ContextEvent):
        """Base of every ``Repository`` event: the provenance of the command."""

    class Created(Event, Aggregate.Created):
        name: RepositoryName

    class BlobLinked(Event):
        digest: Digest
        size: int

        def apply(self, aggregate: Repository) -> None:
            aggregate.blobs[self.digest] = self.size

    class BlobUnlinked(Event):
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            del aggregate.blobs[self.digest]

    class ManifestPushed(Event):
        digest: Digest
        media_type: MediaType
        size: int
        config: Descriptor | None
        layers: tuple[Descriptor, ...]
        manifests: tuple[Descriptor, ...]
        subject: Descriptor | None
        artifact_type: MediaType | None
        annotations: dict[str, str] | None

        def apply(self, aggregate: Repository) -> None:
            aggregate.manifests[self.digest] = self.media_type

    class TagMoved(Event):
        tag: Tag
        from_digest: Digest | None
        to_digest: Digest

        def apply(self, aggregate: Repository) -> None:
            aggregate.tags[self.tag] = self.to_digest

    class TagDeleted(Event):
        tag: Tag
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            del aggregate.tags[self.tag]

    class ManifestDeleted(Event):
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            del aggregate.manifests[self.digest]

    # Access

    class PermissionGranted(Event):
        """A new explicit grant (``from_role`` None) or a changed one."""

        principal: Principal
        role: RepositoryRole
        from_role: RepositoryRole | None

        def apply(self, aggregate: Repository) -> None:
            aggregate.permissions[self.principal] = self.role

    class PermissionRevoked(Event):
        principal: Principal

        def apply(self, aggregate: Repository) -> None:
            del aggregate.permissions[self.principal]

    class VisibilityChanged(Event):
        visibility: Visibility

        def apply(self, aggregate: Repository) -> None:
            aggregate.visibility = self.visibility

    # Lifecycle

    class Deleted(Event):
        """The repository and everything in it are gone (blobs stay in the blob store
        until garbage collection; the stream stays, for the audit trail)."""

        def apply(self, aggregate: Repository) -> None:
            aggregate.blobs.clear()
            aggregate.manifests.clear()
            aggregate.tags.clear()
            aggregate.permissions.clear()
            aggregate.visibility = Visibility.PRIVATE
            aggregate.deleted = True

    class Recreated(Event):
        """A deleted repository's name is in use again: it starts empty and private."""

        def apply(self, aggregate: Repository) -> None:
            aggregate.deleted = False

    def __init__(self, name: RepositoryName) -> None:
        self.name = name
        self.blobs: dict[Digest, int] = {}
        self.manifests: dict[Digest, MediaType] = {}
        self.tags: dict[Tag, Digest] = {}
        self.permissions: dict[Principal, RepositoryRole] = {}
        self.visibility = Visibility.PRIVATE
        self.deleted = False

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before access control: no grants, private."""
        state["permissions"] = {}
        state["visibility"] = Visibility.PRIVATE

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot from before repositories could be deleted: it is live."""
        state["deleted"] = False

    @staticmethod
    def create_id(site_id: UUID, name: RepositoryName) -> UUID:
        """The stream id: ``uuid5(site_id, "repository:<name>")``.

        NOTE: persisted in every stream; changing this formula orphans stored repositories.
        """
        return uuid5(site_id, f"repository:{name}")

    @classmethod
    def create(cls, name: RepositoryName, ctx: EventContext) -> Repository:
        """A new repository; its id is ``create_id(ctx.site_id, name)``."""
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            **ctx.event_fields(),
        )

    # Blobs

    def link_blob(self, digest: Digest, size: int, ctx: EventContext) -> None:
        """Make a stored blob part of this repository. Idempotent for the same size."""
        if self.blobs.get(digest) == size:
            return
        self._trigger(self.BlobLinked, ctx, digest=digest, size=size)

    def unlink_blob(self, digest: Digest, ctx: EventContext) -> None:
        """Remove a blob from this repository. Raises ``BlobUnknown`` if not linked."""
        if digest not in self.blobs:
            raise BlobUnknown(f"blob {digest} is not linked to repository {self.name}")
        self._trigger(self.BlobUnlinked, ctx, digest=digest)

    # Manifests

    def push_manifest(
        self,
        manifest: ParsedManifest,
        ctx: EventContext,
        sparse: SparsePolicy = SparsePolicy.STRICT,
    ) -> None:
        """Record a validated manifest. Idempotent for a digest already pushed.

        Raises ``ManifestBlobUnknown`` naming the config, or (unless ``sparse`` allows
        it) the first layer that is not a linked blob, or the first child of an index that
        is not a manifest of this repository. Descriptors with ``urls`` (foreign layers)
        are exempt, and the ``subject`` need not exist (the spec lets referrers arrive
        first).
        """
        if manifest.digest in self.manifests:
            return
        config = manifest.config
        if config is not None and not config.urls and config.digest not in self.blobs:
            raise ManifestBlobUnknown(
                f"config {config.digest} of manifest {manifest.digest} "
                f"is not in repository {self.name}"
            )
        if sparse is not SparsePolicy.ALL:
            for blob in manifest.layers:
                if not blob.urls and blob.digest not in self.blobs:
                    raise ManifestBlobUnknown(
                        f"blob {blob.digest} referenced by manifest {manifest.digest} "
                        f"is not in repository {self.name}"
                    )
        if sparse is SparsePolicy.STRICT:
            for child in manifest.manifests:
                if child.digest not in self.manifests:
                    raise ManifestBlobUnknown(
                        f"manifest {child.digest} referenced by index {manifest.digest} "
                        f"is not in repository {self.name}"
                    )
        self._trigger(
            self.ManifestPushed,
            ctx,
            digest=manifest.digest,
            media_type=manifest.media_type,
            size=manifest.size,
            config=manifest.config,
            layers=manifest.layers,
            manifests=manifest.manifests,
            subject=manifest.subject,
            artifact_type=manifest.artifact_type,
            annotations=manifest.annotations,
        )

    def delete_manifest(self, digest: Digest, ctx: EventContext) -> None:
        """Delete a manifest and, first, every tag pointing at it (in tag order).

        Raises ``ManifestUnknown`` if it is not a manifest of this repository.
        """
        if digest not in self.manifests:
            raise ManifestUnknown(f"manifest {digest} is not in repository {self.name}")
        for tag in sorted(t for t, d in self.tags.items() if d == digest):
            self._trigger(self.TagDeleted, ctx, tag=tag, digest=digest)
        self._trigger(self.ManifestDeleted, ctx, digest=digest)

    # Tags

    def tag(self, tag: Tag, digest: Digest, ctx: EventContext) -> None:
        """Point ``tag`` at a manifest of this repository. Idempotent.

        Raises ``ManifestUnknown`` if ``digest`` is not a manifest of this repository.
        """
        if digest not in self.manifests:
            raise ManifestUnknown(f"manifest {digest} is not in repository {self.name}")
        current = self.tags.get(tag)
        if current == digest:
            return
        self._trigger(self.TagMoved, ctx, tag=tag, from_digest=current, to_digest=digest)

    def untag(self, tag: Tag, ctx: EventContext) -> None:
        """Delete a tag (not the manifest). Raises ``TagUnknown`` if absent."""
        digest = self.tags.get(tag)
        if digest is None:
            raise TagUnknown(f"tag {tag} is not in repository {self.name}")
        self._trigger(self.TagDeleted, ctx, tag=tag, digest=digest)

    # Access

    def grant(self, principal: Principal, role: RepositoryRole, ctx: EventContext) -> None:
        """Give ``principal`` ``role`` explicitly, or change its role. Idempotent.

        Raises ``PermissionInvalid`` (as Quay does, with 400) for the namespace's own user,
        who is always admin implicitly ("Namespace owner must always be admin"), and for
        a team or robot of another namespace.
        """
        self._check_grantee(principal)
        current = self.permissions.get(principal)
        if current is role:
            return
        self._trigger(
            self.PermissionGranted, ctx, principal=principal, role=role, from_role=current
        )

    def revoke(self, principal: Principal, ctx: EventContext) -> None:
        """Remove ``principal``'s explicit grant.

        Raises ``PermissionInvalid`` for the namespace's own user and ``PermissionUnknown``
        when the principal holds no explicit grant here.
        """
        self._check_grantee(principal)
        if principal not in self.permissions:
            raise PermissionUnknown(f"{principal} has no permission on repository {self.name}")
        self._trigger(self.PermissionRevoked, ctx, principal=principal)

    def set_visibility(self, visibility: Visibility, ctx: EventContext) -> None:
        """Make the repository public or private. Idempotent."""
        if visibility is self.visibility:
            return
        self._trigger(self.VisibilityChanged, ctx, visibility=visibility)

    def delete(self, ctx: EventContext) -> None:
        """Delete the repository. Raises ``RepositoryUnknown`` if it already is."""
        if self.deleted:
            raise RepositoryUnknown(f"repository {self.name} is not known")
        self._trigger(self.Deleted, ctx)

    def recreate(self, ctx: EventContext) -> None:
        """Bring a deleted repository's name back into use, empty. Idempotent on a live one."""
        if self.deleted:
            self._trigger(self.Recreated, ctx)

    def _check_grantee(self, principal: Principal) -> None:
        namespace = self.name.namespace
        if principal.kind is PrincipalKind.USER and principal.name == namespace:
            raise PermissionInvalid(
                f"{principal} owns namespace {namespace}: the namespace owner is always admin"
            )
        if principal.kind is not PrincipalKind.USER and principal.namespace != namespace:
            raise PermissionInvalid(
                f"{principal} belongs to another namespace than repository {self.name}"
            )

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())
