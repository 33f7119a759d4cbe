"""One sync of one repository mirror: claim it, copy what the upstream has, record each
step on the mirror's stream.

``MirrorSync.run`` is what the worker (``chores.mirror_worker``) and ``cargohold mirror
run-once`` call for a due mirror:

1. claim the sync (``SyncStarted``; optimistic concurrency on the mirror's stream: of two
   workers that try, one wins and the other finds the mirror not due);
2. list the upstream's tags (paged) and keep those that match a glob (``SyncPlanned``);
3. for each, in order: when the local tag already names the upstream's digest (a HEAD),
   nothing moves; otherwise fetch the manifest; for an index, each child it keeps (all,
   or those of ``architecture_filter``: a sparse index) is copied first; each image's
   config and layers the repository lacks are streamed from the upstream into the blob
   store (hashed on the way, committed only once verified; never a whole blob in memory)
   and linked; the child manifests are pushed by digest and the tag last, so a tag is
   never visible before everything it names is here (``TagSynced`` / ``TagFailed``);
4. delete the local tags that no upstream tag matching the rule names any more
   (``TagRemoved``), unless listing failed;
5. ``SyncFinished`` (counts, bytes, duration) or ``SyncFailed`` (the upstream is
   unreachable or refuses the credentials: the rest of the tags would fail the same way),
   which reschedules (``domain/mirror.py``).

A worker killed mid-sync leaves its claim to expire (``timeout_s`` after its last step);
the next worker reclaims the sync and starts over, finding the blobs that landed already.
Content writes go through ``RegistryService`` as the mirror's robot, so they are the
pushes of an ordinary client in the log and the audit trail.
"""

from __future__ import annotations

import fnmatch
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from cargohold.commands.mirrors import MirrorService
from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.context import EventContext
from cargohold.domain.credentials import SecretUnreadable
from cargohold.domain.errors import DomainError, InvalidInput
from cargohold.domain.manifest import ParsedManifest, parse_manifest
from cargohold.domain.mirror import Mirror, MirrorNotDue, MirrorSettings, SyncLost
from cargohold.domain.ports import BlobStore
from cargohold.domain.repository import Repository
from cargohold.domain.repository_rules import RepositoryState, SparsePolicy
from cargohold.domain.upstream import (
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRegistry,
    UpstreamUnauthorized,
    UpstreamUnavailable,
    parse_reference,
)
from cargohold.domain.values import Actor, ActorKind, Digest, RepositoryName, Tag

log = logging.getLogger(__name__)

#: Builds the client of a mirror's upstream: (settings, username, password) -> registry.
UpstreamFactory = Callable[[MirrorSettings, str | None, str | None], UpstreamRegistry]

# Upstream failures that end a sync: every further tag would fail the same way.
_FATAL = (UpstreamUnauthorized, UpstreamUnavailable, UpstreamRateLimited)


@dataclass(frozen=True)
class SyncOutcome:
    """What a sync did (also in its ``SyncFinished`` / ``SyncFailed`` event)."""

    status: str
    synced: int
    failed: int
    removed: int
    bytes: int
    message: str | None = None

    @classmethod
    def of(cls, mirror: Mirror, message: str | None) -> SyncOutcome:
        """The outcome a mirror's state records after its sync ended."""
        return cls(
            mirror.status, mirror.synced, mirror.failed, mirror.removed, mirror.bytes, message
        )


class _Stream:
    """The chunks of an upstream blob as a ``ByteSource`` for ``BlobStore.put``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.read_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.read_bytes += len(out)
        return out


class MirrorSync:
    def __init__(
        self,
        mirrors: MirrorService,
        registry: RegistryService,
        blobs: BlobStore,
        upstreams: UpstreamFactory,
    ) -> None:
        self.mirrors = mirrors
        self.registry = registry
        self.blobs = blobs
        self.upstreams = upstreams

    def run(self, name: RepositoryName, now_ms: int | None = None) -> SyncOutcome | None:
        """Sync ``name``'s mirror if it is due (and its repository is in state MIRROR);
        None when there was nothing to do or another worker took it."""
        try:
            mirror = self.mirrors.get(name)
        except DomainError:
            return None
        repo = self.registry.current(name)
        if repo is None or repo.state != RepositoryState.MIRROR.name:
            return None
        if not mirror.due(now_ms if now_ms is not None else self.mirrors.unit.clock.now().wall_ms):
            return None
        claim = uuid.uuid4()
        caller = Caller(Actor(ActorKind.MIRROR, mirror.settings.robot), f"mirror-sync-{claim}")
        try:
            self.mirrors.step(name, caller, lambda m, ctx: m.claim_sync(claim, ctx))
        except MirrorNotDue:
            return None
        try:
            return self._sync(name, claim, caller)
        except SyncLost:
            log.info("the sync of %s was cancelled or taken over", name)
            return None

    # -- the sync ------------------------------------------------------------------------

    def _sync(self, name: RepositoryName, claim: uuid.UUID, caller: Caller) -> SyncOutcome:
        mirror = self.mirrors.get(name)
        settings = mirror.settings
        try:
            username, password = self.mirrors.open_credentials(mirror)
        except SecretUnreadable as e:
            return self._fail(name, claim, caller, f"the upstream credentials: {e}")
        _, path = parse_reference(settings.external_reference)
        upstream = self.upstreams(settings, username, password)
        # Content is written as the mirror's robot: an ordinary pusher to the log.
        writer = Caller(Actor(ActorKind.ROBOT, settings.robot), caller.request_id)
        try:
            try:
                wanted = [t for t in upstream.tags(path) if _matches(t, settings.tag_globs)]
            except UpstreamError as e:
                return self._fail(name, claim, caller, e.message)
            tags = []
            for text in wanted:
                try:
                    tags.append(Tag(text))
                except InvalidInput:
                    continue  # a tag name we cannot hold: not the mirror's to fail on
            self.mirrors.step(name, caller, lambda m, ctx: m.plan(claim, len(tags), ctx))
            for tag in tags:
                try:
                    digest, size = self._copy_tag(name, upstream, path, tag, settings, writer)
                except _FATAL as e:
                    return self._fail(name, claim, caller, f"{tag}: {e.message}")
                except (UpstreamError, DomainError) as e:
                    message = e.message if isinstance(e, UpstreamError) else str(e)
                    self.mirrors.step(name, caller, partial(_tag_failed, claim, tag, message))
                    continue
                self.mirrors.step(name, caller, partial(_tag_synced, claim, tag, str(digest), size))
            self._remove_obsolete(name, claim, caller, writer, set(tags))
        finally:
            upstream.close()
        self.mirrors.step(name, caller, lambda m, ctx: m.finish(claim, ctx))
        done = self.mirrors.get(name)
        return SyncOutcome.of(done, done.last_error)

    def _fail(
        self, name: RepositoryName, claim: uuid.UUID, caller: Caller, message: str
    ) -> SyncOutcome:
        self.mirrors.step(name, caller, lambda m, ctx: m.fail(claim, message, ctx))
        return SyncOutcome.of(self.mirrors.get(name), message)

    def _remove_obsolete(
        self,
        name: RepositoryName,
        claim: uuid.UUID,
        caller: Caller,
        writer: Caller,
        upstream_tags: set[Tag],
    ) -> None:
        repo = self.registry.current(name)
        local = sorted(repo.tags) if repo is not None else []
        for tag in local:
            if tag in upstream_tags:
                continue
            try:
                self.registry.untag(name, tag, writer)
            except DomainError:
                continue  # gone meanwhile
            self.mirrors.step(name, caller, partial(_tag_removed, claim, tag))

    # -- copying ---------------------------------------------------------------------

    def _copy_tag(
        self,
        name: RepositoryName,
        upstream: UpstreamRegistry,
        path: str,
        tag: Tag,
        settings: MirrorSettings,
        writer: Caller,
    ) -> tuple[Digest, int]:
        """Copy ``tag``; returns its digest and the bytes copied."""
        repo = self.registry.current(name)
        here = repo.tags.get(tag) if repo is not None else None
        if here is not None:
            there = upstream.manifest_digest(path, str(tag))
            if there is None:
                raise UpstreamNotFound(f"tag {tag} is gone from the upstream")
            if there == here:
                return here, 0
        fetched = upstream.manifest(path, str(tag))
        manifest = parse_manifest(fetched.body, fetched.media_type, fetched.digest)
        copied = 0
        sparse: SparsePolicy | None = None
        if manifest.is_index:
            children = [d for d in manifest.manifests if _keeps(d.platform, settings.architectures)]
            if len(children) < len(manifest.manifests):
                sparse = SparsePolicy.INDEX
            for child in children:
                copied += self._copy_image(name, repo, upstream, path, child.digest, writer)
        else:
            copied += self._copy_blobs(name, repo, upstream, path, manifest, writer)
        self.registry.push_manifest(
            name, tag, fetched.body, fetched.media_type, writer, sparse=sparse
        )
        return fetched.digest, copied

    def _copy_image(
        self,
        name: RepositoryName,
        repo: Repository | None,
        upstream: UpstreamRegistry,
        path: str,
        digest: Digest,
        writer: Caller,
    ) -> int:
        if repo is not None and digest in repo.manifests:
            return 0
        fetched = upstream.manifest(path, str(digest))
        manifest = parse_manifest(fetched.body, fetched.media_type, fetched.digest)
        if manifest.is_index:
            raise InvalidInput(f"{digest} is an index inside an index: not mirrored")
        copied = self._copy_blobs(name, repo, upstream, path, manifest, writer)
        self.registry.push_manifest(name, digest, fetched.body, fetched.media_type, writer)
        return copied

    def _copy_blobs(
        self,
        name: RepositoryName,
        repo: Repository | None,
        upstream: UpstreamRegistry,
        path: str,
        manifest: ParsedManifest,
        writer: Caller,
    ) -> int:
        """Stream the blobs of ``manifest`` that ``repo`` lacks; the bytes copied. (A
        ``repo`` read before the tag's first push only makes a link repeat: idempotent.)"""
        linked = repo.blobs if repo is not None else {}
        copied = 0
        for d in manifest.blobs:
            if d.urls or d.digest in linked:
                continue  # a foreign layer (never distributed), or here already
            if not self.blobs.exists(d.digest):
                with upstream.blob(path, d.digest) as blob:
                    stream = _Stream(blob.chunks)
                    self.blobs.put(stream, expected=d.digest, expected_size=d.size)
                    copied += stream.read_bytes
            self.registry.link_blob(name, d.digest, writer)
        return copied


# The steps of a tag, as ``MirrorService.step`` decisions (``partial`` binds the loop's
# values; a lambda in the loop would not).


def _tag_synced(
    claim: uuid.UUID, tag: Tag, digest: str, size: int, mirror: Mirror, ctx: EventContext
) -> None:
    mirror.tag_synced(claim, tag, digest, size, ctx)


def _tag_failed(
    claim: uuid.UUID, tag: Tag, message: str, mirror: Mirror, ctx: EventContext
) -> None:
    mirror.tag_failed(claim, tag, message, ctx)


def _tag_removed(claim: uuid.UUID, tag: Tag, mirror: Mirror, ctx: EventContext) -> None:
    mirror.tag_removed(claim, tag, ctx)


def _matches(tag: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(tag, g.strip()) for g in globs)


def _keeps(platform: dict[str, object] | None, architectures: tuple[str, ...]) -> bool:
    """Whether an index keeps a child of ``platform`` under an architecture filter."""
    if not architectures:
        return True
    return platform is not None and platform.get("architecture") in architectures
