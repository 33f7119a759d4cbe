"""The registry's write side: one application service over the ``Repository`` aggregate.

Every command is load, decide, save. ``save`` writes all events of one command at once;
a version conflict (another writer saved the same repository first) is retried with a
fresh load, so concurrent pushes to one tag all succeed and are all in its history. A
command returns only once the read models show its effect (``ViewsWaiter``).

PERF: the last repositories a process wrote stay in memory between commands
(``WarmRepositories``); before each use one is fast-forwarded with the events stored
after its version, so it is never staler than a fresh load. An event saved by another
process between that read and our save makes the save fail on the version (the log's
primary key), and the retry loads afresh, so a cached aggregate never decides wrongly.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError, RecordConflictError
from eventsourcing.utils import Environment

from cargohold.domain.accounts import Account, Organization
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext, ctx_time
from cargohold.domain.errors import (
    BlobUnknown,
    ConcurrentModification,
    DigestInvalid,
    DomainError,
    ReplicatedReadOnly,
    RepositoryExists,
    RepositoryUnknown,
)
from cargohold.domain.expiration import MAX_CONFIG_BYTES, label_expiration
from cargohold.domain.identity import Principal, RepositoryRole, Visibility
from cargohold.domain.manifest import ParsedManifest, parse_manifest
from cargohold.domain.ports import BlobStore
from cargohold.domain.repository import Repository, SparsePolicy
from cargohold.domain.values import Actor, Digest, DigestAlgorithm, RepositoryName, Tag


class RegistryLog(Application[UUID]):
    """The event log of repositories (an eventsourcing ``Application``).

    Configured only from the ``env`` mapping that bootstrap builds from ``Settings``:
    unlike the library's default, it never reads ``os.environ``.
    """

    name = "registry"

    def __init__(self, env: Mapping[str, str], snapshot_interval: int = 200) -> None:
        # NOTE: the library reads this class variable through the instance; setting it per
        # instance makes the interval configurable without a class per setting.
        self.snapshotting_intervals = {  # type: ignore[misc]
            Repository: snapshot_interval,
            Organization: snapshot_interval,
            Account: snapshot_interval,
        }
        super().__init__(env=dict(env))

    def construct_env(self, name: str, env: Any = None) -> Environment:
        merged = dict(type(self).env)
        merged["IS_SNAPSHOTTING_ENABLED"] = "y"
        merged.update(env or {})
        return Environment(name, merged)


class WarmRepositories:
    """The last ``size`` repositories saved by this process, kept for the next command.

    ``load`` hands an aggregate out (taking it out of the cache) fast-forwarded to the
    log's latest version, or loads it from the log; ``keep`` puts one back after it was
    saved. An aggregate whose command failed is simply never kept: it may hold events
    that were not saved. Thread-safe; the caller serialises commands per repository.
    """

    def __init__(self, log: Application[UUID], size: int = 256) -> None:
        self._log = log
        self._size = size
        self._items: OrderedDict[UUID, Repository] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, repo_id: UUID) -> Repository:
        """The repository as stored now. Raises ``AggregateNotFoundError``."""
        with self._lock:
            repo = self._items.pop(repo_id, None)
        if repo is None:
            loaded: Repository = self._log.repository.get(repo_id)
            return loaded
        # NOTE: each event checks that it follows the aggregate's version (mutate).
        newer = self._log.events.get(originator_id=repo_id, gt=repo.version)
        fresh: Repository | None = project_aggregate(repo, newer)
        if fresh is None:  # pragma: no cover - a stored stream never ends in None
            raise AggregateNotFoundError(repo_id)
        return fresh

    def keep(self, repo: Repository) -> None:
        """Cache ``repo``, whose every event is saved, for the next command."""
        if self._size <= 0 or repo.pending_events:
            return
        with self._lock:
            self._items[repo.id] = repo
            self._items.move_to_end(repo.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ViewsWaiter(Protocol):
    def wait_for(self, position: int) -> None:
        """Return once the registry-critical views include notification ``position``."""


class Replicas(Protocol):
    """Names whose streams were imported from other sites (``cargohold import``).

    Such names are read-only here: a command computes the *local* stream id of a name, so
    writing an imported name would start a second stream for it (see
    ``projections/origins.py``).
    """

    def repository_origin(self, name: RepositoryName) -> UUID | None:
        """The other site that owns repository ``name`` or its namespace; None when both
        are this site's or unknown."""

    def namespace_origin(self, name: str) -> UUID | None:
        """The other site that owns the user or organisation ``name``, or repositories in
        that namespace; None otherwise."""

    def foreign_account(self, name: str) -> UUID | None:
        """The stream id of the account ``name`` imported from another site, or None."""


class NoReplicas:
    """A site that never imported anything (tools and tests)."""

    def repository_origin(self, name: RepositoryName) -> UUID | None:
        return None

    def namespace_origin(self, name: str) -> UUID | None:
        return None

    def foreign_account(self, name: str) -> UUID | None:
        return None


def replicated(what: str, site: UUID) -> ReplicatedReadOnly:
    return ReplicatedReadOnly(
        f"{what} is replicated from site {site} and is managed there (read-only here)"
    )


@dataclass(frozen=True)
class Caller:
    """Who issues a command, under which request id and from which network address (for
    the audit trail; ``None`` for the CLI and the system's own commands)."""

    actor: Actor
    request_id: str
    client_address: str | None = None


#: The explicit grants a new repository starts with, given its name and its creator.
CreationGrants = Callable[[RepositoryName, Actor], Sequence[tuple[Principal, RepositoryRole]]]


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


def default_tag_window(namespace: str) -> timedelta:
    return DEFAULT_TAG_WINDOW


def no_creation_grants(
    name: RepositoryName, creator: Actor
) -> Sequence[tuple[Principal, RepositoryRole]]:
    return ()


class RegistryService:
    """Commands on repositories.

    A repository comes into being with its first write (push-to-create) or through
    ``create_repository``; either way it starts private with the grants that
    ``creation_grants`` gives (the organisation's default permissions and the creator's
    admin grant, as Quay does), saved with the ``Created`` event in one ``save()``.
    """

    def __init__(
        self,
        log: RegistryLog,
        blobs: BlobStore,
        views: ViewsWaiter,
        clock: HybridLogicalClock,
        site_id: UUID,
        sparse: SparsePolicy = SparsePolicy.STRICT,
        retry: RetryPolicy | None = None,
        creation_grants: CreationGrants = no_creation_grants,
        tag_window: TagWindow = default_tag_window,
        warm_repositories: int = 256,
        replicas: Replicas | None = None,
    ) -> None:
        self.replicas: Replicas = replicas or NoReplicas()
        self.creation_grants = creation_grants
        self.tag_window = tag_window
        self.warm = WarmRepositories(log, warm_repositories)
        self.sparse = sparse
        self._retry = retry or RetryPolicy()
        self._stripes = tuple(threading.Lock() for _ in range(64))
        self.log = log
        self.blobs = blobs
        self.views = views
        self.clock = clock
        self.site_id = site_id

    # -- commands ----------------------------------------------------------------------

    def create_repository(
        self,
        name: RepositoryName,
        caller: Caller,
        visibility: Visibility = Visibility.PRIVATE,
    ) -> None:
        """Create a repository explicitly. Raises ``RepositoryExists`` if it is there."""

        def decide(repo: Repository, ctx: EventContext) -> None:
            if not _is_fresh(repo):
                raise RepositoryExists(f"repository {name} already exists")
            repo.set_visibility(visibility, ctx)

        self._execute(name, caller, decide, create=True)

    def delete_repository(self, name: RepositoryName, caller: Caller) -> None:
        """Delete a repository and everything in it. Raises ``RepositoryUnknown``."""
        self._execute(name, caller, lambda repo, ctx: repo.delete(ctx), create=False)

    def link_blob(self, name: RepositoryName, digest: Digest, caller: Caller) -> int:
        """Link a blob that is in the blob store into the repository; returns its size."""
        size = self.blobs.stat(digest)
        self._execute(name, caller, lambda repo, ctx: repo.link_blob(digest, size, ctx))
        return size

    def unlink_blob(self, name: RepositoryName, digest: Digest, caller: Caller) -> None:
        self._execute(name, caller, lambda repo, ctx: repo.unlink_blob(digest, ctx), create=False)

    def push_manifest(
        self,
        name: RepositoryName,
        reference: Tag | Digest,
        body: bytes,
        content_type: str | None,
        caller: Caller,
    ) -> ParsedManifest:
        """Validate and store a manifest, record it, and point ``reference`` at it if it is
        a tag. With a digest reference the body must hash to it (either algorithm)."""
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
            repo.push_manifest(manifest, ctx, self.sparse)
            if isinstance(reference, Tag):
                before = repo.tags.get(reference)
                repo.tag(reference, digest, ctx)
                if expires_after is not None and repo.tags.get(reference) != before:
                    # A new lifetime of the tag, from an image labelled to expire.
                    repo.set_tag_expiration(reference, ctx_time(ctx) + expires_after, ctx)
            # The body is stored once the manifest is accepted, before the event that
            # says it exists. (A retry after a version conflict rewrites the same blob.)
            # PERF: re-tagging a manifest of the repository (CI pushing one image under
            # many tags) does not write and fsync its body again when the store has it.
            if not known or not self._has_blob(digest, len(body)):
                self.blobs.put(io.BytesIO(body), expected=digest, expected_size=len(body))

        self._execute(name, caller, decide)
        return manifest

    def tag(self, name: RepositoryName, tag: Tag, digest: Digest, caller: Caller) -> None:
        self._execute(name, caller, lambda repo, ctx: repo.tag(tag, digest, ctx), create=False)

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

        self._execute(name, caller, decide, create=False)

    def set_tag_expiration(
        self, name: RepositoryName, tag: Tag, expires_at: datetime | None, caller: Caller
    ) -> None:
        self._execute(
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

    def untag(self, name: RepositoryName, tag: Tag, caller: Caller) -> None:
        self._execute(name, caller, lambda repo, ctx: repo.untag(tag, ctx), create=False)

    def delete_manifest(self, name: RepositoryName, digest: Digest, caller: Caller) -> None:
        self._execute(
            name, caller, lambda repo, ctx: repo.delete_manifest(digest, ctx), create=False
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

    # -- the one load-decide-save loop -------------------------------------------------

    def _execute(
        self,
        name: RepositoryName,
        caller: Caller,
        decide: Callable[[Repository, EventContext], None],
        *,
        create: bool = True,
    ) -> None:
        origin = self.replicas.repository_origin(name)
        if origin is not None:
            raise replicated(f"repository {name}", origin)
        repo_id = Repository.create_id(self.site_id, name)
        # NOTE: commands on one repository queue here within a process, so version
        # conflicts come only from other processes or nodes; those are retried with
        # jittered backoff until the time budget is spent.
        deadline = self._retry.monotonic() + self._retry.budget
        attempt = 0
        with self._stripes[repo_id.int % len(self._stripes)]:
            while True:
                ctx = EventContext(
                    actor=caller.actor,
                    site_id=self.site_id,
                    hlc=self.clock.now(),
                    request_id=caller.request_id,
                    client_address=caller.client_address,
                )
                try:
                    repo = self.warm.load(repo_id)
                except AggregateNotFoundError:
                    if not create:
                        raise RepositoryUnknown(f"repository {name} is not known") from None
                    repo = Repository.create(name, ctx)
                    self._grant_initial(repo, caller, ctx)
                else:
                    if repo.deleted:
                        if not create:
                            raise RepositoryUnknown(f"repository {name} is not known")
                        repo.recreate(ctx)
                        self._grant_initial(repo, caller, ctx)
                decide(repo, ctx)
                try:
                    recordings = self.log.save(repo)
                except (IntegrityError, RecordConflictError):
                    # another writer saved this repository first: reload and retry
                    # (``repo`` holds unsaved events now, so it is not kept)
                    attempt += 1
                    if self._retry.monotonic() >= deadline:
                        raise ConcurrentModification(
                            f"repository {name} is too busy; try again"
                        ) from None
                    self._retry.sleep(self._retry.jitter() * min(0.05, 0.001 * 2**attempt))
                else:
                    self.warm.keep(repo)
                    break
        if recordings:
            self.views.wait_for(max(r.notification.id for r in recordings))

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


def _is_fresh(repo: Repository) -> bool:
    """Whether ``repo``'s pending events start its current life (created or recreated)."""
    pending = repo.pending_events
    return bool(pending) and isinstance(pending[0], Repository.Created | Repository.Recreated)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a command keeps retrying version conflicts; injectable for tests."""

    budget: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic
