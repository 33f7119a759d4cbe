"""The registry's write side: one application service over the ``Repository`` aggregate.

Every command is load, decide, save. ``save`` writes all events of one command at once;
a version conflict (another writer saved the same repository first) is retried with a
fresh load, so concurrent pushes to one tag all succeed and are all in its history. A
command returns only once the read models show its effect. The loop is the unit of work's
(``unit_of_work.py``).

PERF: the last repositories a process wrote stay in memory between commands
(``warm_repositories.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from cargohold.commands.creation_grants import CreationGrants, no_creation_grants
from cargohold.commands.replicas import NoReplicas, Replicas, replicated
from cargohold.commands.unit_of_work import Caller, UnitOfWork
from cargohold.commands.warm_repositories import WarmRepositories
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext, ctx_time
from cargohold.domain.errors import (
    BlobUnknown,
    DigestInvalid,
    DomainError,
    RepositoryExists,
    RepositoryUnknown,
)
from cargohold.domain.expiration import MAX_CONFIG_BYTES, label_expiration
from cargohold.domain.identity import Principal, RepositoryRole, Visibility
from cargohold.domain.manifest import ParsedManifest, parse_manifest
from cargohold.domain.mirror import Mirror, mirror_id
from cargohold.domain.ports import BlobStore
from cargohold.domain.repository import Repository
from cargohold.domain.repository_merge import MergedState, adopt, fold
from cargohold.domain.repository_rules import RepositoryState, SparsePolicy, check_content_write
from cargohold.domain.values import Actor, Digest, DigestAlgorithm, RepositoryName, Tag

#: The time-machine window of a namespace (how long a past tag stays restorable).
TagWindow = Callable[[str], timedelta]

DEFAULT_TAG_WINDOW = timedelta(weeks=2)

#: The largest stored manifest read back to restore a tag to a deleted manifest.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

#: The media types of image configs that may carry the ``quay.expires-after`` label.
IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


#: Refuses (raising a ``DomainError``) a content write that ``actor`` may not make in the
#: repository for a reason of its namespace (a pull-through cache's organisation).
ContentGuard = Callable[[RepositoryName, Actor], None]


def default_tag_window(namespace: str) -> timedelta:
    return DEFAULT_TAG_WINDOW


def no_content_guard(name: RepositoryName, actor: Actor) -> None:
    return None


class RegistryService:
    """Commands on repositories.

    A repository comes into being with its first write (push-to-create) or through
    ``create_repository``; either way it starts private with the grants that
    ``creation_grants`` gives (the organisation's default permissions and the creator's
    admin grant, as Quay does), saved with the ``Created`` event in one ``save()``.
    """

    def __init__(
        self,
        unit: UnitOfWork,
        blobs: BlobStore,
        sparse: SparsePolicy = SparsePolicy.STRICT,
        creation_grants: CreationGrants = no_creation_grants,
        tag_window: TagWindow = default_tag_window,
        warm_repositories: int = 256,
        replicas: Replicas | None = None,
        content_guard: ContentGuard = no_content_guard,
    ) -> None:
        self.unit = unit
        self.content_guard = content_guard
        self.blobs = blobs
        self.replicas: Replicas = replicas or NoReplicas()
        self.creation_grants = creation_grants
        self.tag_window = tag_window
        self.warm = WarmRepositories(unit.log, warm_repositories)
        self.sparse = sparse

    @property
    def clock(self) -> HybridLogicalClock:
        return self.unit.clock

    @property
    def site_id(self) -> UUID:
        return self.unit.site_id

    # -- commands ----------------------------------------------------------------------

    def create_repository(
        self,
        name: RepositoryName,
        caller: Caller,
        visibility: Visibility = Visibility.PRIVATE,
    ) -> None:
        """Create a repository explicitly. Raises ``RepositoryExists`` if it is there."""

        self._execute(
            name,
            caller,
            lambda repo, ctx: repo.set_visibility(visibility, ctx),
            create=True,
            exists=RepositoryExists(f"repository {name} already exists"),
        )

    def delete_repository(self, name: RepositoryName, caller: Caller) -> None:
        """Delete a repository and everything in it. Raises ``RepositoryUnknown``."""
        self._execute(name, caller, lambda repo, ctx: repo.delete(ctx), create=False)

    def link_blob(self, name: RepositoryName, digest: Digest, caller: Caller) -> int:
        """Link a blob that is in the blob store into the repository; returns its size."""
        size = self.blobs.stat(digest)
        self._content(name, caller, lambda repo, ctx: repo.link_blob(digest, size, ctx))
        return size

    def unlink_blob(self, name: RepositoryName, digest: Digest, caller: Caller) -> None:
        self._content(
            name,
            caller,
            lambda repo, ctx: repo.unlink_blob(digest, ctx),
            create=False,
            removal=True,
        )

    def push_manifest(
        self,
        name: RepositoryName,
        reference: Tag | Digest,
        body: bytes,
        content_type: str | None,
        caller: Caller,
        sparse: SparsePolicy | None = None,
        revalidated: bool = False,
    ) -> ParsedManifest:
        """Validate and store a manifest, record it, and point ``reference`` at it if it is
        a tag. With a digest reference the body must hash to it (either algorithm).
        ``sparse`` overrides the registry's policy (a mirror's architecture filter makes
        sparse indexes). ``revalidated``: a pull-through cache fetched it from its
        upstream just now, so the tag is fresh (``TagRevalidated``)."""
        policy = self.sparse if sparse is None else sparse
        if isinstance(reference, Digest):
            digest = Digest.of(body, reference.algorithm)
            if digest != reference:
                raise DigestInvalid(f"manifest body does not match digest {reference}")
        else:
            digest = Digest.of(body, DigestAlgorithm.SHA256)
        manifest = parse_manifest(body, content_type, digest)
        expires_after = self._expires_after(manifest) if isinstance(reference, Tag) else None

        def decide(repo: Repository, ctx: EventContext) -> None:
            known = digest in repo.manifests
            repo.push_manifest(manifest, ctx, policy)
            if isinstance(reference, Tag):
                before = repo.tags.get(reference)
                repo.tag(reference, digest, ctx)
                if expires_after is not None and repo.tags.get(reference) != before:
                    # A new lifetime of the tag, from an image labelled to expire.
                    repo.set_tag_expiration(reference, ctx_time(ctx) + expires_after, ctx)
                if revalidated:
                    repo.revalidate_tag(reference, digest, ctx)
            # The body is stored once the manifest is accepted, before the event that
            # says it exists. (A retry after a version conflict rewrites the same blob.)
            # PERF: re-tagging a manifest of the repository (CI pushing one image under
            # many tags) does not write and fsync its body again when the store has it.
            if not known or not self._has_blob(digest, len(body)):
                self.blobs.put(io.BytesIO(body), expected=digest, expected_size=len(body))

        self._content(name, caller, decide)
        return manifest

    def tag(self, name: RepositoryName, tag: Tag, digest: Digest, caller: Caller) -> None:
        self._content(name, caller, lambda repo, ctx: repo.tag(tag, digest, ctx), create=False)

    def restore_tag(self, name: RepositoryName, tag: Tag, digest: Digest, caller: Caller) -> None:
        """Point ``tag`` back at a manifest it pointed to within the namespace's window
        (see ``Repository.restore_tag``); a manifest deleted since is pushed again from
        its stored bytes, if they are still there."""
        window = self.tag_window(name.namespace)

        def decide(repo: Repository, ctx: EventContext) -> None:
            manifest = None
            if digest not in repo.manifests and repo.restorable(tag, digest, window, ctx):
                manifest = self._stored_manifest(digest)
            repo.restore_tag(tag, digest, window, ctx, manifest, self.sparse)

        self._content(name, caller, decide, create=False)

    def set_tag_expiration(
        self, name: RepositoryName, tag: Tag, expires_at: datetime | None, caller: Caller
    ) -> None:
        self._content(
            name,
            caller,
            lambda repo, ctx: repo.set_tag_expiration(tag, expires_at, ctx),
            create=False,
        )

    def expire_tags(self, name: RepositoryName, caller: Caller) -> None:
        """Record every expiration of the repository that is due (the sweeper's command).

        Nothing for a repository imported from another site: its origin records them
        (the views hide an expired tag meanwhile)."""
        if self.replicas.repository_origin(name) is not None:
            return
        self._execute(name, caller, lambda repo, ctx: repo.expire_due(ctx), create=False)

    def revalidate_tag(
        self, name: RepositoryName, tag: Tag, digest: Digest, caller: Caller
    ) -> None:
        """A pull-through cache's upstream still names ``digest`` for ``tag``."""
        self._content(
            name, caller, lambda repo, ctx: repo.revalidate_tag(tag, digest, ctx), create=False
        )

    def untag(self, name: RepositoryName, tag: Tag, caller: Caller) -> None:
        self._content(
            name, caller, lambda repo, ctx: repo.untag(tag, ctx), create=False, removal=True
        )

    def delete_manifest(self, name: RepositoryName, digest: Digest, caller: Caller) -> None:
        self._content(
            name,
            caller,
            lambda repo, ctx: repo.delete_manifest(digest, ctx),
            create=False,
            removal=True,
        )

    def grant(
        self, name: RepositoryName, principal: Principal, role: RepositoryRole, caller: Caller
    ) -> None:
        self._execute(
            name, caller, lambda repo, ctx: repo.grant(principal, role, ctx), create=False
        )

    def revoke(self, name: RepositoryName, principal: Principal, caller: Caller) -> None:
        self._execute(name, caller, lambda repo, ctx: repo.revoke(principal, ctx), create=False)

    def set_visibility(self, name: RepositoryName, visibility: Visibility, caller: Caller) -> None:
        self._execute(
            name, caller, lambda repo, ctx: repo.set_visibility(visibility, ctx), create=False
        )

    def set_state(self, name: RepositoryName, state: RepositoryState, caller: Caller) -> None:
        """Quay's ``changestate``: NORMAL, READ_ONLY or MIRROR."""
        self._execute(name, caller, lambda repo, ctx: repo.set_state(state, ctx), create=False)

    def current(self, name: RepositoryName) -> Repository | None:
        """The repository as the log has it now, to read (the mirror sync compares its
        tags and blobs with the upstream's); None when it does not exist."""
        repo: Repository | None = self.unit.find(Repository.create_id(self.site_id, name))
        others = self.replicas.repository_streams(name)
        if others:
            merged = self._merged(name, others, repo)
            if not merged.live:
                return None
            if repo is None:
                repo = merged.repository
            else:
                adopt(repo, merged)
        return None if repo is None or repo.deleted else repo

    # -- the unit of work ---------------------------------------------------------------

    def _content(
        self,
        name: RepositoryName,
        caller: Caller,
        decide: Callable[[Repository, EventContext], None],
        *,
        create: bool = True,
        removal: bool = False,
    ) -> None:
        """``_execute`` for a change of content (blobs, manifests, tags): refused in a
        READ_ONLY repository, in a MIRROR one for all but its mirror's robot, and by the
        ``content_guard`` unless it is a ``removal`` (a cache's admins may evict)."""
        if not removal:
            self.content_guard(name, caller.actor)

        def checked(repo: Repository, ctx: EventContext) -> None:
            robot = self._mirror_robot(name, repo.state)
            check_content_write(name, repo.state, caller.actor, robot)
            decide(repo, ctx)

        self._execute(name, caller, checked, create=create)

    def _mirror_robot(self, name: RepositoryName, state: str) -> str | None:
        if state != RepositoryState.MIRROR.name:
            return None
        mirror: Mirror | None = self.unit.find(mirror_id(self.site_id, name))
        return None if mirror is None or mirror.deleted else mirror.settings.robot

    def _execute(
        self,
        name: RepositoryName,
        caller: Caller,
        decide: Callable[[Repository, EventContext], None],
        *,
        create: bool = True,
        exists: DomainError | None = None,
    ) -> None:
        """Run ``decide`` on repository ``name`` through the unit of work. ``create``: a
        repository that does not exist (or was deleted) comes into being first, with its
        creation grants; otherwise that is ``RepositoryUnknown``. ``exists``: raised when
        it does exist (an explicit creation).

        At a site with geo peers, a name that other sites' streams hold too is decided
        on the fold of them all (``repository_merge``); the events go into this site's
        stream, which a ``Created`` starts if the name is live elsewhere only (the views
        join it to the name)."""
        origin = self.replicas.repository_origin(name)
        if origin is not None:
            raise replicated(f"repository {name}", origin)
        repo_id = Repository.create_id(self.site_id, name)
        others = self.replicas.repository_streams(name)

        def load(ctx: EventContext) -> Repository:
            if others:
                return self._load_merged(name, repo_id, others, caller, ctx, create, exists)
            try:
                repo = self.warm.load(repo_id)
            except AggregateNotFoundError:
                return self._start(name, caller, ctx, create)
            return self._live(repo, caller, ctx, create, exists)

        self.unit.execute(
            repo_id,
            caller,
            load,
            decide,
            # NOTE: a merged aggregate holds other streams' state: never kept warm.
            saved=None if others else self.warm.keep,
            busy=f"repository {name} is too busy; try again",
        )

    def _start(
        self, name: RepositoryName, caller: Caller, ctx: EventContext, create: bool
    ) -> Repository:
        """This site's first stream of ``name`` (or ``RepositoryUnknown``)."""
        if not create:
            raise RepositoryUnknown(f"repository {name} is not known")
        repo = Repository.create(name, ctx)
        self._grant_initial(repo, caller, ctx)
        return repo

    def _live(
        self,
        repo: Repository,
        caller: Caller,
        ctx: EventContext,
        create: bool,
        exists: DomainError | None,
    ) -> Repository:
        """``repo``, brought back first if it was deleted (or ``RepositoryUnknown``)."""
        if not repo.deleted:
            if exists is not None:
                raise exists
            return repo
        if not create:
            raise RepositoryUnknown(f"repository {repo.name} is not known")
        repo.recreate(ctx)
        self._grant_initial(repo, caller, ctx)
        return repo

    def _load_merged(
        self,
        name: RepositoryName,
        repo_id: UUID,
        others: list[UUID],
        caller: Caller,
        ctx: EventContext,
        create: bool,
        exists: DomainError | None,
    ) -> Repository:
        """This site's aggregate of ``name`` holding the fold of every site's stream."""
        local: Repository | None = self.unit.find(repo_id)
        merged = self._merged(name, others, local)
        if not merged.live:
            # Deleted (or never begun) everywhere: as for a name of this site alone.
            if local is None:
                return self._start(name, caller, ctx, create)
            adopt(local, merged)
            return self._live(local, caller, ctx, create, exists)
        if exists is not None:
            raise exists
        if local is None:
            # Live at other sites only: this site's stream starts, and joins it.
            local = Repository.create(name, ctx)
        elif local.deleted:
            local.recreate(ctx)
        adopt(local, merged)
        return local

    def _merged(
        self, name: RepositoryName, others: list[UUID], local: Repository | None
    ) -> MergedState:
        """The fold of ``name``'s streams: the other sites' ``others``, and this site's
        (``local``, as loaded) if it has one."""
        log = self.unit.log.events
        events: list[Any] = [e for stream_id in others for e in log.get(originator_id=stream_id)]
        if local is not None:
            # NOTE: the local stream as far as ``local`` has it: its version is what the
            # command's events follow.
            events.extend(log.get(originator_id=local.id, lte=local.version))
        return fold(name, events)

    def _expires_after(self, manifest: ParsedManifest) -> timedelta | None:
        """The ``quay.expires-after`` label of an image's config blob, read only when it
        is a small JSON config in the blob store; any failure means no label."""
        config = manifest.config
        if (
            config is None
            or config.urls
            or str(config.media_type) not in IMAGE_CONFIG_TYPES
            or not 0 < config.size <= MAX_CONFIG_BYTES
        ):
            return None
        try:
            body = b"".join(self.blobs.read(config.digest, 0, config.size))
        except DomainError:
            return None  # the push itself reports a missing config blob
        return label_expiration(body)

    def _stored_manifest(self, digest: Digest) -> ParsedManifest | None:
        """A manifest parsed back from the blob store, or None if its bytes are gone."""
        try:
            if self.blobs.stat(digest) > MAX_MANIFEST_BYTES:
                return None
            body = b"".join(self.blobs.read(digest))
            return parse_manifest(body, None, digest)
        except DomainError:
            return None

    def _has_blob(self, digest: Digest, size: int) -> bool:
        try:
            return self.blobs.stat(digest) == size
        except BlobUnknown:
            return False

    def _grant_initial(self, repo: Repository, caller: Caller, ctx: EventContext) -> None:
        for principal, role in self.creation_grants(repo.name, caller.actor):
            repo.grant(principal, role, ctx)
