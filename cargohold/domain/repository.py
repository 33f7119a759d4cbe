"""The ``Repository`` aggregate: blobs linked, manifests pushed, tags moved.

Its events are a persisted schema (see DESIGN.md, "The log"): rename one only with
``register_topic``, change its shape only with ``class_version`` and an upcaster. Every
event carries the command's ``EventContext`` fields (``actor``, ``site_id``, ``hlc``,
``request_id``) through the shared base ``Repository.Event``.

Guards run in the public command methods, before any event exists; the events' ``apply``
methods only mutate state, because they also run on replay. They are total, reading the
state they change rather than trusting the event's view of it (a ``TagDeleted`` ends the
lifetime the tag has): at a site with geo peers the commands fold every site's stream of
a name through them (``repository_merge.py``), in an order no single stream had.

Access: ``permissions`` (principal -> role) and ``visibility`` (PRIVATE until changed:
``Created`` has no visibility field, so every stream, old or new, starts private, as Quay
creates repositories). The aggregate's ``class_version`` 2 upcasts snapshots taken before
these fields existed; version 3 adds ``deleted`` (``Deleted`` empties the repository,
``Recreated`` brings its name back into use, so one stream holds every life of a name).

State (version 5 adds ``state``): Quay's NORMAL, READ_ONLY or MIRROR (``StateChanged``;
a deletion resets it). The content writes it refuses are refused by
``repository_rules.check_content_write``, which the registry's commands run.

The tag time machine (version 4 adds ``tag_expirations`` and ``tag_pasts``):

- ``TagExpirationChanged`` sets or clears the moment a tag stops being served (Quay's
  ``change_tag_expiration``). Moving, restoring or deleting the tag clears it.
- ``TagExpired`` records that a tag's expiration passed: the tag is gone, exactly as if
  deleted at ``expires_at`` (the moment it expired, not the moment it was noticed). It
  is always caused by the system actor: every command that touches tags first records
  the expirations that are due (``expire_due``), and the server's sweeper records them
  for repositories nobody touches. Readers do not wait for it: the views hide an
  expired tag as soon as its expiration passes.
- ``TagRestored`` points a tag back at a manifest it pointed to before (Quay's
  ``revert_tag``). Allowed only when the tag stopped pointing at that manifest no longer
  ago than the namespace's window (``tag_pasts`` keeps, per tag, when it last stopped
  pointing at each manifest). A manifest deleted since is pushed again first, from its
  bytes, which the blob store keeps (as Quay's time machine keeps the manifests of dead
  tags until the window has passed); if its blobs are gone too, the restore is refused.

One piece, over 450 lines on purpose (issue 15): this module is the aggregate and only
it. Its events must be classes nested in ``Repository`` (they are stored as
``cargohold.domain.repository:Repository.<Event>``), and its command methods are the
guards that decide them over one consistency boundary; splitting the class (mixins)
would scatter that boundary. What is not the aggregate lives elsewhere: the pure checks
its guards call in ``repository_rules.py``, ``epoch_ms`` in ``clock.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.clock import epoch_ms
from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import (
    BlobUnknown,
    ManifestUnknown,
    PermissionUnknown,
    RepositoryUnknown,
    TagUnknown,
)
from cargohold.domain.identity import Principal, RepositoryRole, Visibility
from cargohold.domain.manifest import ParsedManifest
from cargohold.domain.repository_rules import (
    RepositoryState,
    SparsePolicy,
    check_grantee,
    check_references,
    checked_expiration,
)
from cargohold.domain.values import (
    Actor,
    Descriptor,
    Digest,
    MediaType,
    RepositoryName,
    Tag,
)


class Repository(Aggregate):
    """One OCI repository (``<namespace>/<name>``) at one origin site.

    State: ``name``; ``blobs`` (digest -> size) linked into the repository; ``manifests``
    (digest -> media type) pushed to it; ``tags`` (tag -> manifest digest);
    ``permissions`` (principal -> explicit role); ``visibility``; ``tag_expirations``
    (tag -> when it stops being served); ``tag_pasts`` (tag -> manifest digest -> when
    the tag last stopped pointing at it, in HLC wall milliseconds).
    """

    # NOTE: v2 added ``permissions`` and ``visibility``; v3 ``deleted``; v4 the time
    # machine's ``tag_expirations`` and ``tag_pasts``; v5 ``state``. See the upcasters.
    class_version = 5

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
            aggregate.blobs.pop(self.digest, None)

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
            aggregate._point(self.tag, self.to_digest, self.hlc.wall_ms)

    class TagDeleted(Event):
        tag: Tag
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            aggregate._end_tag(self.tag, self.hlc.wall_ms)

    class TagRestored(Event):
        """Quay's ``revert_tag``: ``tag`` points again at ``to_digest``, a manifest it
        pointed to before; ``from_digest`` is what it pointed at (``None``: nothing)."""

        tag: Tag
        from_digest: Digest | None
        to_digest: Digest

        def apply(self, aggregate: Repository) -> None:
            aggregate._point(self.tag, self.to_digest, self.hlc.wall_ms)

    class TagExpirationChanged(Event):
        """Quay's ``change_tag_expiration``: the live tag (pointing at ``digest``) stops
        being served at ``expires_at`` (``None``: never); ``from_expires_at`` is the
        expiration it replaces."""

        tag: Tag
        digest: Digest
        expires_at: datetime | None
        from_expires_at: datetime | None

        def apply(self, aggregate: Repository) -> None:
            if aggregate.tags.get(self.tag) != self.digest:
                return  # the tag moved on at another site first (the geo fold)
            if self.expires_at is None:
                aggregate.tag_expirations.pop(self.tag, None)
            else:
                aggregate.tag_expirations[self.tag] = self.expires_at

    class TagExpired(Event):
        """The tag's expiration (``expires_at``) passed: it no longer points at
        ``digest``. Recorded by the system actor, at or after ``expires_at``."""

        tag: Tag
        digest: Digest
        expires_at: datetime

        def apply(self, aggregate: Repository) -> None:
            if aggregate.tags.get(self.tag) != self.digest:
                return  # the tag moved on at another site first (the geo fold)
            aggregate._end_tag(self.tag, epoch_ms(self.expires_at))

    class TagRevalidated(Event):
        """A pull-through cache asked its upstream, which still names ``digest`` for
        ``tag`` (the tag points there): the cached tag is fresh again."""

        tag: Tag
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            pass

    class ManifestDeleted(Event):
        digest: Digest

        def apply(self, aggregate: Repository) -> None:
            aggregate.manifests.pop(self.digest, None)

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
            aggregate.permissions.pop(self.principal, None)

    class VisibilityChanged(Event):
        visibility: Visibility

        def apply(self, aggregate: Repository) -> None:
            aggregate.visibility = self.visibility

    class StateChanged(Event):
        """Quay's repository state: ``state`` is a ``RepositoryState`` name."""

        state: str

        def apply(self, aggregate: Repository) -> None:
            aggregate.state = self.state

    # Lifecycle

    class Deleted(Event):
        """The repository and everything in it are gone (blobs stay in the blob store
        until garbage collection; the stream stays, for the audit trail)."""

        def apply(self, aggregate: Repository) -> None:
            aggregate.blobs.clear()
            aggregate.manifests.clear()
            aggregate.tags.clear()
            aggregate.tag_expirations.clear()
            aggregate.tag_pasts.clear()
            aggregate.permissions.clear()
            aggregate.visibility = Visibility.PRIVATE
            aggregate.state = RepositoryState.NORMAL.name
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
        self.tag_expirations: dict[Tag, datetime] = {}
        self.tag_pasts: dict[Tag, dict[Digest, int]] = {}
        self.state = RepositoryState.NORMAL.name

    def _tag_ended(self, tag: Tag, digest: Digest, at_ms: int) -> None:
        self.tag_pasts.setdefault(tag, {})[digest] = at_ms

    def _point(self, tag: Tag, digest: Digest, at_ms: int) -> None:
        """``tag`` points at ``digest`` from ``at_ms``: the lifetime it had ends."""
        current = self.tags.get(tag)
        if current is not None:
            self._tag_ended(tag, current, at_ms)
        self.tag_expirations.pop(tag, None)
        self.tags[tag] = digest

    def _end_tag(self, tag: Tag, at_ms: int) -> None:
        """``tag`` stops pointing anywhere at ``at_ms`` (if it pointed somewhere)."""
        current = self.tags.pop(tag, None)
        if current is not None:
            self._tag_ended(tag, current, at_ms)
        self.tag_expirations.pop(tag, None)

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
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A snapshot from before the time machine: no expirations, no past to restore
        (the history before the snapshot stays in the log and the views)."""
        state["tag_expirations"] = {}
        state["tag_pasts"] = {}

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A snapshot from before repository states: NORMAL."""
        state["state"] = RepositoryState.NORMAL.name

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
        check_references(manifest, self.blobs, self.manifests, sparse, self.name)
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
        self.expire_due(ctx)
        for tag in sorted(t for t, d in self.tags.items() if d == digest):
            self._trigger(self.TagDeleted, ctx, tag=tag, digest=digest)
        self._trigger(self.ManifestDeleted, ctx, digest=digest)

    # Tags

    def tag(self, tag: Tag, digest: Digest, ctx: EventContext) -> None:
        """Point ``tag`` at a manifest of this repository. Idempotent.

        Raises ``ManifestUnknown`` if ``digest`` is not a manifest of this repository.
        """
        self.expire_due(ctx)
        if digest not in self.manifests:
            raise ManifestUnknown(f"manifest {digest} is not in repository {self.name}")
        current = self.tags.get(tag)
        if current == digest:
            return
        self._trigger(self.TagMoved, ctx, tag=tag, from_digest=current, to_digest=digest)

    def untag(self, tag: Tag, ctx: EventContext) -> None:
        """Delete a tag (not the manifest). Raises ``TagUnknown`` if absent."""
        self.expire_due(ctx)
        digest = self.tags.get(tag)
        if digest is None:
            raise TagUnknown(f"tag {tag} is not in repository {self.name}")
        self._trigger(self.TagDeleted, ctx, tag=tag, digest=digest)

    def revalidate_tag(self, tag: Tag, digest: Digest, ctx: EventContext) -> None:
        """Record that a cache's upstream still names ``digest`` for ``tag``. Raises
        ``TagUnknown`` unless the tag points at ``digest``."""
        self.expire_due(ctx)
        if self.tags.get(tag) != digest:
            raise TagUnknown(f"tag {tag} of repository {self.name} does not point at {digest}")
        self._trigger(self.TagRevalidated, ctx, tag=tag, digest=digest)

    # The time machine

    def expire_due(self, ctx: EventContext) -> None:
        """Record, as the system actor, every tag whose expiration is at or before the
        command's time (in tag order). Idempotent."""
        now = ctx.hlc.wall_ms
        due = sorted(t for t, at in self.tag_expirations.items() if epoch_ms(at) <= now)
        if not due:
            return
        system = EventContext(
            actor=Actor.system(),
            site_id=ctx.site_id,
            hlc=ctx.hlc,
            request_id=ctx.request_id,
        )
        for tag in due:
            self._trigger(
                self.TagExpired,
                system,
                tag=tag,
                digest=self.tags[tag],
                expires_at=self.tag_expirations[tag],
            )

    def set_tag_expiration(self, tag: Tag, expires_at: datetime | None, ctx: EventContext) -> None:
        """Make a live tag stop being served at ``expires_at`` (``None``: never). Idempotent.

        Raises ``TagUnknown`` for a tag that is not live and ``InvalidInput`` for an
        expiration that is naive or not after the command's time.
        """
        self.expire_due(ctx)
        digest = self.tags.get(tag)
        if digest is None:
            raise TagUnknown(f"tag {tag} is not in repository {self.name}")
        expires_at = checked_expiration(expires_at, ctx.hlc.wall_ms)
        current = self.tag_expirations.get(tag)
        if current == expires_at:
            return
        self._trigger(
            self.TagExpirationChanged,
            ctx,
            tag=tag,
            digest=digest,
            expires_at=expires_at,
            from_expires_at=current,
        )

    def restorable(self, tag: Tag, digest: Digest, window: timedelta, ctx: EventContext) -> bool:
        """Whether ``tag`` stopped pointing at ``digest`` within ``window`` of the command's
        time (the guard of ``restore_tag``)."""
        ended = self.tag_pasts.get(tag, {}).get(digest)
        return ended is not None and ctx.hlc.wall_ms - ended <= window // timedelta(milliseconds=1)

    def restore_tag(
        self,
        tag: Tag,
        digest: Digest,
        window: timedelta,
        ctx: EventContext,
        manifest: ParsedManifest | None = None,
        sparse: SparsePolicy = SparsePolicy.STRICT,
    ) -> None:
        """Point ``tag`` back at ``digest`` (Quay's restore). Idempotent when it points there.

        Raises ``ManifestUnknown`` unless the tag stopped pointing at ``digest`` within
        ``window`` (the namespace's time-machine window) of the command's time. A manifest
        deleted since must come as ``manifest`` (parsed from its stored bytes) and is pushed
        again first, under the usual guards (``ManifestBlobUnknown`` if its blobs are gone).
        """
        self.expire_due(ctx)
        current = self.tags.get(tag)
        if current == digest:
            return
        if not self.restorable(tag, digest, window, ctx):
            raise ManifestUnknown(
                f"tag {tag} did not point at manifest {digest} within the time machine "
                f"window ({int(window.total_seconds())} s) of repository {self.name}"
            )
        if digest not in self.manifests:
            if manifest is None or manifest.digest != digest:
                raise ManifestUnknown(
                    f"manifest {digest} was deleted from repository {self.name} "
                    "and its content is gone"
                )
            self.push_manifest(manifest, ctx, sparse)
        self._trigger(self.TagRestored, ctx, tag=tag, from_digest=current, to_digest=digest)

    # Access

    def grant(self, principal: Principal, role: RepositoryRole, ctx: EventContext) -> None:
        """Give ``principal`` ``role`` explicitly, or change its role. Idempotent.

        Raises ``PermissionInvalid`` (as Quay does, with 400) for the namespace's own user,
        who is always admin implicitly ("Namespace owner must always be admin"), and for
        a team or robot of another namespace.
        """
        check_grantee(principal, self.name)
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
        check_grantee(principal, self.name)
        if principal not in self.permissions:
            raise PermissionUnknown(f"{principal} has no permission on repository {self.name}")
        self._trigger(self.PermissionRevoked, ctx, principal=principal)

    def set_visibility(self, visibility: Visibility, ctx: EventContext) -> None:
        """Make the repository public or private. Idempotent."""
        if visibility is self.visibility:
            return
        self._trigger(self.VisibilityChanged, ctx, visibility=visibility)

    def set_state(self, state: RepositoryState, ctx: EventContext) -> None:
        """Quay's ``changestate``. Idempotent."""
        if state.name != self.state:
            self._trigger(self.StateChanged, ctx, state=state.name)

    def delete(self, ctx: EventContext) -> None:
        """Delete the repository. Raises ``RepositoryUnknown`` if it already is."""
        if self.deleted:
            raise RepositoryUnknown(f"repository {self.name} is not known")
        self._trigger(self.Deleted, ctx)

    def recreate(self, ctx: EventContext) -> None:
        """Bring a deleted repository's name back into use, empty. Idempotent on a live one."""
        if self.deleted:
            self._trigger(self.Recreated, ctx)

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())
