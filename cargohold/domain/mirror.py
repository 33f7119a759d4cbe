"""The ``Mirror`` aggregate: a repository's pull mirror of an upstream repository, and
every step of its syncs.

A stream of its own, not part of the ``Repository`` stream: a sync writes a dozen events
per minute while pushes and pulls go on, and claims are optimistic-concurrency races
between workers; on the repository's stream every such race would also conflict with its
pushes (and every load of a busy repository would replay its mirror's chatter). The id is
``uuid5(site_id, "mirror:<ns/name>")``, so the repository and its mirror find each other
by name, and one repository has at most one mirror.

Settings are Quay's (``MirrorSettings``); upstream credentials only ever enter an event as
ciphertext (``credentials``: sealed by the command layer with a key of the installation's
own, see ``domain/credentials.SecretBox``).

The sync cycle, as Quay's mirror worker runs it:

- a sync is *due* when the mirror is enabled and either ``SYNC_NOW`` was asked, or its
  next start (``next_sync_ms``) has passed with retries left, or a running sync's claim
  expired (its worker died); ``claim`` (``SyncStarted``) takes it, and two workers that
  load the same version race on the save: one wins, the other reloads and finds it
  not due;
- the claim lasts ``timeout_s`` past the last step (each tag synced, failed or removed
  renews it), so a sync that makes progress keeps it and a stuck one loses it;
- every step carries the claim's id: a worker whose claim was cancelled or taken over
  gets ``SyncLost`` at its next step and stops;
- the end (``SyncFinished`` or ``SyncFailed``) reschedules: success, or a failure with no
  retries left, sets the next start on the schedule's grid
  (``start + k * interval``) with the retries refilled; a failure with retries left takes
  one and leaves the start where it is, so the next pass tries again.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import Conflict, InvalidInput, NotFound
from cargohold.domain.topics import stored_as
from cargohold.domain.upstream import parse_reference
from cargohold.domain.values import RepositoryName

#: Quay's ``MAX_SYNC_RETRIES``: failures in a row before a mirror waits for its next interval.
MAX_SYNC_RETRIES = 3
#: The shortest claim (Quay's minimum ``skopeo_timeout_interval``), in seconds.
MIN_TIMEOUT_S = 300
#: The architectures an ``architecture_filter`` may name (Quay's list).
ARCHITECTURES = ("amd64", "arm64", "ppc64le", "s390x", "386", "arm", "riscv64")


class SyncStatus(enum.Enum):
    """Quay's ``RepoMirrorStatus``; the API returns the names."""

    CANCEL = -2
    FAIL = -1
    NEVER_RUN = 0
    SUCCESS = 1
    SYNCING = 2
    SYNC_NOW = 3


class MirrorUnknown(NotFound):
    """The repository has no mirror configured."""


class MirrorExists(Conflict):
    """The repository has a mirror already (Quay: 409)."""


class MirrorBusy(Conflict):
    """The mirror is syncing, or not in a state the command needs."""


class MirrorNotDue(Conflict):
    """A worker tried to claim a mirror that is not due (another worker won the race)."""


class SyncLost(Conflict):
    """A worker's claim is gone: the sync was cancelled, finished or taken over."""


@dataclass(frozen=True)
class MirrorSettings:
    """What an operator configures (Quay's mirror fields, in our units).

    ``username`` is the upstream account (Quay returns it); ``credentials`` is the
    password's ciphertext (or None); ``proxy`` holds ``http_proxy``,
    ``https_proxy`` and ``no_proxy`` (each possibly None); ``architectures`` empty means
    every platform."""

    external_reference: str
    sync_interval_s: int
    robot: str
    tag_globs: tuple[str, ...]
    username: str | None = None
    credentials: bytes | None = None
    verify_tls: bool = True
    unsigned_images: bool = False
    proxy: dict[str, str | None] | None = None
    timeout_s: int = MIN_TIMEOUT_S
    architectures: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ``InvalidInput`` for settings an operator may not set. Not run on replay:
        the log is the truth, and a rule tightened later must not make history unreadable."""
        if not self.external_reference:
            raise InvalidInput("external_reference is required")
        try:
            parse_reference(self.external_reference)
        except ValueError as e:
            raise InvalidInput(f"external_reference: {e}") from None
        if self.credentials is not None and not self.username:
            raise InvalidInput("external_registry_password needs external_registry_username")
        if self.sync_interval_s < 0:
            raise InvalidInput("sync_interval must be 0 or more seconds")
        if self.timeout_s < MIN_TIMEOUT_S:
            raise InvalidInput(f"skopeo_timeout_interval must be at least {MIN_TIMEOUT_S}")
        if not self.tag_globs or any(not g.strip() for g in self.tag_globs):
            raise InvalidInput("root_rule.rule_value must list at least one tag glob")
        for arch in self.architectures:
            if arch not in ARCHITECTURES:
                raise InvalidInput(
                    f"architecture_filter: {arch!r} is not one of {', '.join(ARCHITECTURES)}"
                )

    def event_fields(self) -> dict[str, Any]:
        return asdict(self)


SETTINGS_FIELDS = tuple(f.name for f in fields(MirrorSettings))


def mirror_id(site_id: UUID, repository: RepositoryName) -> UUID:
    """The stream id: ``uuid5(site_id, "mirror:<name>")``. NOTE: persisted; never change it."""
    return uuid5(site_id, f"mirror:{repository}")


@stored_as("cargohold.domain.mirror")
class Mirror(Aggregate):
    """One repository's mirror (see the module docstring).

    State: ``repository``; ``config`` (the settings' fields; ``settings`` builds the
    dataclass); ``enabled``; ``status``; ``next_sync_ms`` (Quay's ``sync_start_date``);
    ``retries``; the running sync's ``claim``, ``expires_ms`` and ``started_ms``; its
    progress: ``tags_total``, ``synced``, ``failed``, ``removed``, ``bytes``;
    ``last_error`` (the running or last sync's latest failure, for the status);
    ``deleted`` (version 2: the mirror went with its repository, ``Deleted``; a mirror
    configured again on the recreated repository is ``Reconfigured`` on the same
    stream)."""

    # NOTE: v2 added ``deleted``; see the upcaster.
    class_version = 2

    class Event(ContextEvent):
        """Base of every ``Mirror`` event: the provenance of the command."""

    class Created(Event, Aggregate.Created):
        """The mirror is configured (Quay's POST .../mirror)."""

        repository: RepositoryName
        external_reference: str
        sync_interval_s: int
        robot: str
        tag_globs: tuple[str, ...]
        username: str | None
        credentials: bytes | None
        verify_tls: bool
        unsigned_images: bool
        proxy: dict[str, str | None] | None
        timeout_s: int
        architectures: tuple[str, ...]
        enabled: bool
        next_sync_ms: int

    class Changed(Event):
        """The settings after the change (all of them), and the names of those that
        changed (``next_sync_ms`` among them when the start date moved)."""

        external_reference: str
        sync_interval_s: int
        robot: str
        tag_globs: tuple[str, ...]
        username: str | None
        credentials: bytes | None
        verify_tls: bool
        unsigned_images: bool
        proxy: dict[str, str | None] | None
        timeout_s: int
        architectures: tuple[str, ...]
        next_sync_ms: int
        changed: tuple[str, ...]

        def apply(self, aggregate: Mirror) -> None:
            aggregate.config = {name: getattr(self, name) for name in SETTINGS_FIELDS}
            aggregate.next_sync_ms = self.next_sync_ms

    class Enabled(Event):
        def apply(self, aggregate: Mirror) -> None:
            aggregate.enabled = True

    class Disabled(Event):
        def apply(self, aggregate: Mirror) -> None:
            aggregate.enabled = False

    class SyncRequested(Event):
        def apply(self, aggregate: Mirror) -> None:
            aggregate.status = SyncStatus.SYNC_NOW.name
            aggregate.next_sync_ms = self.hlc.wall_ms
            aggregate.retries = MAX_SYNC_RETRIES

    class SyncStarted(Event):
        """A worker claimed the sync; ``reclaimed``: the previous claim had expired."""

        claim: UUID
        expires_ms: int
        reclaimed: bool

        def apply(self, aggregate: Mirror) -> None:
            aggregate.status = SyncStatus.SYNCING.name
            aggregate.claim = self.claim
            aggregate.expires_ms = self.expires_ms
            aggregate.started_ms = self.hlc.wall_ms
            aggregate.tags_total = 0
            aggregate.synced = aggregate.failed = aggregate.removed = aggregate.bytes = 0
            aggregate.last_error = None

    class SyncPlanned(Event):
        """The upstream's tags that match the rule: ``tags_total`` to copy."""

        claim: UUID
        tags_total: int
        expires_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate.tags_total = self.tags_total
            aggregate.expires_ms = self.expires_ms

    class TagSynced(Event):
        """``tag`` points at ``digest`` here as upstream; ``bytes`` copied for it (0 when
        everything was here already)."""

        claim: UUID
        tag: str
        digest: str
        bytes: int
        expires_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate.synced += 1
            aggregate.bytes += self.bytes
            aggregate.expires_ms = self.expires_ms

    class TagFailed(Event):
        claim: UUID
        tag: str
        message: str
        expires_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate.failed += 1
            aggregate.last_error = f"{self.tag}: {self.message}"
            aggregate.expires_ms = self.expires_ms

    class TagRemoved(Event):
        """A local tag no upstream tag matches any more was deleted."""

        claim: UUID
        tag: str
        expires_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate.removed += 1
            aggregate.expires_ms = self.expires_ms

    class SyncFinished(Event):
        """The sync ran to its end; ``status`` SUCCESS, or FAIL when a tag failed."""

        claim: UUID
        status: str
        synced: int
        failed: int
        removed: int
        bytes: int
        duration_ms: int
        next_sync_ms: int
        retries: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate._release(self.status, self.next_sync_ms, self.retries)

    class SyncFailed(Event):
        """The sync stopped before its end (upstream unreachable, refused, ...)."""

        claim: UUID
        message: str
        next_sync_ms: int
        retries: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate.last_error = self.message
            aggregate._release(SyncStatus.FAIL.name, self.next_sync_ms, self.retries)

    class Cancelled(Event):
        next_sync_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate._release(SyncStatus.CANCEL.name, self.next_sync_ms, MAX_SYNC_RETRIES)

    class Deleted(Event):
        """The mirror's repository was deleted, and the mirror with it (as in Quay)."""

        repository: RepositoryName

        def apply(self, aggregate: Mirror) -> None:
            aggregate.deleted = True
            aggregate.enabled = False
            aggregate._release(SyncStatus.NEVER_RUN.name, aggregate.next_sync_ms, MAX_SYNC_RETRIES)

    class Reconfigured(Event):
        """A mirror is configured again, after ``Deleted`` (the same fields as ``Created``):
        it starts afresh."""

        repository: RepositoryName
        external_reference: str
        sync_interval_s: int
        robot: str
        tag_globs: tuple[str, ...]
        username: str | None
        credentials: bytes | None
        verify_tls: bool
        unsigned_images: bool
        proxy: dict[str, str | None] | None
        timeout_s: int
        architectures: tuple[str, ...]
        enabled: bool
        next_sync_ms: int

        def apply(self, aggregate: Mirror) -> None:
            aggregate._start(
                self.enabled,
                self.next_sync_ms,
                {name: getattr(self, name) for name in SETTINGS_FIELDS},
            )

    def __init__(
        self,
        repository: RepositoryName,
        enabled: bool,
        next_sync_ms: int,
        external_reference: str,
        sync_interval_s: int,
        robot: str,
        tag_globs: tuple[str, ...],
        username: str | None,
        credentials: bytes | None,
        verify_tls: bool,
        unsigned_images: bool,
        proxy: dict[str, str | None] | None,
        timeout_s: int,
        architectures: tuple[str, ...],
    ) -> None:
        settings = {
            "external_reference": external_reference,
            "sync_interval_s": sync_interval_s,
            "robot": robot,
            "tag_globs": tag_globs,
            "username": username,
            "credentials": credentials,
            "verify_tls": verify_tls,
            "unsigned_images": unsigned_images,
            "proxy": proxy,
            "timeout_s": timeout_s,
            "architectures": architectures,
        }
        self.repository = repository
        self._start(enabled, next_sync_ms, settings)

    def _start(self, enabled: bool, next_sync_ms: int, settings: dict[str, Any]) -> None:
        # NOTE: a plain dict, not the MirrorSettings: snapshots hold only values the
        # transcoder knows (``settings`` builds the dataclass).
        self.config: dict[str, Any] = dict(settings)
        self.enabled = enabled
        self.status = SyncStatus.NEVER_RUN.name
        self.next_sync_ms = next_sync_ms
        self.retries = MAX_SYNC_RETRIES
        self.claim: UUID | None = None
        self.expires_ms: int | None = None
        self.started_ms: int | None = None
        self.tags_total = self.synced = self.failed = self.removed = self.bytes = 0
        self.last_error: str | None = None
        self.deleted = False

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before mirrors could be deleted: it is live."""
        state["deleted"] = False

    @property
    def settings(self) -> MirrorSettings:
        return MirrorSettings(**self.config)

    def _release(self, status: str, next_sync_ms: int, retries: int) -> None:
        self.status = status
        self.next_sync_ms = next_sync_ms
        self.retries = retries
        self.claim = None
        self.expires_ms = None

    # -- configuration -----------------------------------------------------------------

    @classmethod
    def configure(
        cls,
        repository: RepositoryName,
        settings: MirrorSettings,
        enabled: bool,
        start_ms: int,
        ctx: EventContext,
    ) -> Mirror:
        return cls._create(
            cls.Created,
            id=mirror_id(ctx.site_id, repository),
            repository=repository,
            enabled=enabled,
            next_sync_ms=start_ms,
            **settings.event_fields(),
            **ctx.event_fields(),
        )

    def reconfigure(
        self, settings: MirrorSettings, enabled: bool, start_ms: int, ctx: EventContext
    ) -> None:
        """Configure a deleted mirror again. Raises ``MirrorExists`` for a live one."""
        if not self.deleted:
            raise MirrorExists(f"repository {self.repository} has a mirror already")
        self._trigger(
            self.Reconfigured,
            ctx,
            repository=self.repository,
            enabled=enabled,
            next_sync_ms=start_ms,
            **settings.event_fields(),
        )

    def delete(self, ctx: EventContext) -> None:
        """The mirror goes with its repository. Idempotent."""
        if not self.deleted:
            self._trigger(self.Deleted, ctx, repository=self.repository)

    def change(self, settings: MirrorSettings, start_ms: int | None, ctx: EventContext) -> None:
        """New settings (and start date); no event when nothing differs."""
        changed = tuple(
            n for n in SETTINGS_FIELDS if getattr(settings, n) != getattr(self.settings, n)
        )
        next_ms = self.next_sync_ms if start_ms is None else start_ms
        if next_ms != self.next_sync_ms:
            changed += ("next_sync_ms",)
        if changed:
            self._trigger(
                self.Changed, ctx, next_sync_ms=next_ms, changed=changed, **settings.event_fields()
            )

    def set_enabled(self, enabled: bool, ctx: EventContext) -> None:
        if enabled != self.enabled:
            self._trigger(self.Enabled if enabled else self.Disabled, ctx)

    def request_sync(self, ctx: EventContext) -> None:
        """Quay's sync-now: run at the next pass, with the retries refilled."""
        if self.status == SyncStatus.SYNCING.name and not self._claim_expired(ctx):
            raise MirrorBusy(f"the mirror of {self.repository} is syncing now")
        self._trigger(self.SyncRequested, ctx)

    def cancel(self, ctx: EventContext) -> None:
        """Stop a running or requested sync; the next one runs on the schedule."""
        if self.status not in (SyncStatus.SYNCING.name, SyncStatus.SYNC_NOW.name):
            raise MirrorBusy(f"the mirror of {self.repository} has no sync to cancel")
        self._trigger(self.Cancelled, ctx, next_sync_ms=self._next_on_grid(ctx.hlc.wall_ms))

    # -- the sync cycle ----------------------------------------------------------------

    def due(self, now_ms: int) -> bool:
        """Whether a worker may claim a sync at ``now_ms`` (the module docstring)."""
        if not self.enabled or self.deleted:
            return False
        if self.status == SyncStatus.SYNCING.name:
            return self.expires_ms is not None and self.expires_ms <= now_ms
        if self.status == SyncStatus.SYNC_NOW.name:
            return True
        return self.next_sync_ms <= now_ms and self.retries > 0

    def claim_sync(self, claim: UUID, ctx: EventContext) -> None:
        now = ctx.hlc.wall_ms
        if not self.due(now):
            raise MirrorNotDue(f"the mirror of {self.repository} is not due")
        reclaimed = self.status == SyncStatus.SYNCING.name
        self._trigger(
            self.SyncStarted, ctx, claim=claim, expires_ms=self._expiry(now), reclaimed=reclaimed
        )

    def plan(self, claim: UUID, tags_total: int, ctx: EventContext) -> None:
        self._check_claim(claim)
        self._trigger(
            self.SyncPlanned,
            ctx,
            claim=claim,
            tags_total=tags_total,
            expires_ms=self._expiry(ctx.hlc.wall_ms),
        )

    def tag_synced(self, claim: UUID, tag: str, digest: str, size: int, ctx: EventContext) -> None:
        self._check_claim(claim)
        self._trigger(
            self.TagSynced,
            ctx,
            claim=claim,
            tag=tag,
            digest=digest,
            bytes=size,
            expires_ms=self._expiry(ctx.hlc.wall_ms),
        )

    def tag_failed(self, claim: UUID, tag: str, message: str, ctx: EventContext) -> None:
        self._check_claim(claim)
        self._trigger(
            self.TagFailed,
            ctx,
            claim=claim,
            tag=tag,
            message=message,
            expires_ms=self._expiry(ctx.hlc.wall_ms),
        )

    def tag_removed(self, claim: UUID, tag: str, ctx: EventContext) -> None:
        self._check_claim(claim)
        self._trigger(
            self.TagRemoved, ctx, claim=claim, tag=tag, expires_ms=self._expiry(ctx.hlc.wall_ms)
        )

    def finish(self, claim: UUID, ctx: EventContext) -> None:
        self._check_claim(claim)
        now = ctx.hlc.wall_ms
        ok = self.failed == 0
        next_ms, retries = self._schedule(ok, now)
        self._trigger(
            self.SyncFinished,
            ctx,
            claim=claim,
            status=(SyncStatus.SUCCESS if ok else SyncStatus.FAIL).name,
            synced=self.synced,
            failed=self.failed,
            removed=self.removed,
            bytes=self.bytes,
            duration_ms=max(0, now - (self.started_ms or now)),
            next_sync_ms=next_ms,
            retries=retries,
        )

    def fail(self, claim: UUID, message: str, ctx: EventContext) -> None:
        self._check_claim(claim)
        next_ms, retries = self._schedule(False, ctx.hlc.wall_ms)
        self._trigger(
            self.SyncFailed,
            ctx,
            claim=claim,
            message=message,
            next_sync_ms=next_ms,
            retries=retries,
        )

    # -- rules -------------------------------------------------------------------------

    def _check_claim(self, claim: UUID) -> None:
        if self.claim != claim:
            raise SyncLost(f"the sync of {self.repository} was cancelled or taken over")

    def _claim_expired(self, ctx: EventContext) -> bool:
        return self.expires_ms is not None and self.expires_ms <= ctx.hlc.wall_ms

    def _expiry(self, now_ms: int) -> int:
        return now_ms + self.settings.timeout_s * 1000

    def _schedule(self, ok: bool, now_ms: int) -> tuple[int, int]:
        """Quay's ``release_mirror``: (next start, retries left) after a sync."""
        retries = self.retries if ok else max(0, self.retries - 1)
        if ok or retries < 1:
            return self._next_on_grid(now_ms), MAX_SYNC_RETRIES
        return self.next_sync_ms, retries

    def _next_on_grid(self, now_ms: int) -> int:
        """The first start after ``now_ms`` on the grid ``next_sync_ms + k * interval``."""
        interval = self.settings.sync_interval_s * 1000
        if interval <= 0:
            return now_ms
        if self.next_sync_ms > now_ms:
            return self.next_sync_ms
        return now_ms + interval - (now_ms - self.next_sync_ms) % interval

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())
