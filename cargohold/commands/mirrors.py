"""Commands on repository mirrors: configure, change, enable, sync-now, cancel, and the
repository state they go with.

Configuring a mirror (Quay's ``POST .../mirror``) also grants its robot **write** on the
repository and puts the repository in state MIRROR, so that the worker syncs it and
nobody else writes to it. Quay leaves the state to a separate ``changestate`` call and
its worker skips repositories not in MIRROR, which makes a configured mirror that never
runs the commonest support question; here the state follows the configuration, and a
``changestate`` away from MIRROR still pauses the mirror.

Upstream passwords are sealed (``SecretBox``) before they reach an event, bound to the
repository's name; only ``open_credentials`` (used by the sync) opens them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import Caller, UnitOfWork
from cargohold.domain.context import EventContext
from cargohold.domain.credentials import SecretBox
from cargohold.domain.errors import InvalidInput, RepositoryUnknown
from cargohold.domain.identity import Principal, RepositoryRole
from cargohold.domain.mirror import (
    MIN_TIMEOUT_S,
    Mirror,
    MirrorExists,
    MirrorSettings,
    MirrorUnknown,
    mirror_id,
)
from cargohold.domain.repository_rules import RepositoryState
from cargohold.domain.values import RepositoryName


class Robots(Protocol):
    """Where robots are looked up (``projections.identity_queries.IdentityQueries``)."""

    def robot(self, namespace: str, short_name: str) -> Any | None: ...


@dataclass(frozen=True)
class MirrorInput:
    """A mirror's settings as an operator gives them (the API's fields, in our units).
    ``password`` is plaintext here and nowhere after ``MirrorService``."""

    external_reference: str
    sync_interval_s: int
    sync_start_ms: int
    robot: str
    tag_globs: tuple[str, ...]
    is_enabled: bool = True
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    unsigned_images: bool = False
    proxy: dict[str, str | None] | None = None
    timeout_s: int = MIN_TIMEOUT_S
    architectures: tuple[str, ...] = ()


#: The fields of ``MirrorInput`` that ``MirrorService.change`` accepts.
CHANGEABLE = frozenset(
    {
        "external_reference",
        "sync_interval_s",
        "sync_start_ms",
        "robot",
        "tag_globs",
        "is_enabled",
        "username",
        "password",
        "verify_tls",
        "unsigned_images",
        "proxy",
        "timeout_s",
        "architectures",
    }
)


class MirrorService:
    def __init__(
        self,
        unit: UnitOfWork,
        registry: RegistryService,
        secrets: SecretBox,
        robots: Robots,
    ) -> None:
        self.unit = unit
        self.registry = registry
        self.secrets = secrets
        self.robots = robots

    # -- reading -----------------------------------------------------------------------

    def get(self, name: RepositoryName) -> Mirror:
        """The repository's mirror as the log has it; ``MirrorUnknown`` when none."""
        mirror = self._find(name)
        if mirror is None:
            raise MirrorUnknown(f"repository {name} has no mirror")
        return mirror

    def open_credentials(self, mirror: Mirror) -> tuple[str | None, str | None]:
        """``(username, password)`` for the upstream; ``SecretUnreadable`` when the
        password was sealed under another key."""
        settings = mirror.settings
        if settings.credentials is None:
            return settings.username, None
        password = self.secrets.open(settings.credentials, _context(mirror.repository))
        return settings.username, password.decode()

    # -- configuration -----------------------------------------------------------------

    def configure(self, name: RepositoryName, given: MirrorInput, caller: Caller) -> None:
        """Quay's ``POST .../mirror``: ``MirrorExists`` when there is one, ``InvalidInput``
        for bad settings, ``RepositoryUnknown`` for no repository."""
        if self.registry.current(name) is None:
            raise RepositoryUnknown(f"repository {name} is not known")
        robot = self._robot(name, given.robot)
        settings = self._settings(name, given)
        settings.check()  # refuses a password without a username, too
        old: Mirror | None = self.unit.find(mirror_id(self.unit.site_id, name))
        if old is None:
            ctx = self.unit.context(caller)
            mirror = Mirror.configure(name, settings, given.is_enabled, given.sync_start_ms, ctx)
            self.unit.create(
                [mirror], lambda: MirrorExists(f"repository {name} has a mirror already")
            )
        else:  # a mirror deleted with an earlier life of the repository
            self.unit.execute(
                old.id,
                caller,
                lambda ctx: self.unit.log.repository.get(old.id),
                lambda m, ctx: m.reconfigure(settings, given.is_enabled, given.sync_start_ms, ctx),
                busy=f"the mirror of {name} is too busy; try again",
            )
        self._admit(name, robot, caller)

    def delete(self, name: RepositoryName, caller: Caller) -> None:
        """The repository's mirror goes (its repository is being deleted); a no-op when
        it has none."""
        if self._find(name) is None:
            return
        self._execute(name, caller, lambda mirror, ctx: mirror.delete(ctx))

    def change(self, name: RepositoryName, changes: Mapping[str, Any], caller: Caller) -> None:
        """Quay's ``PUT .../mirror``: any subset of ``CHANGEABLE``."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise InvalidInput(f"unknown mirror settings: {', '.join(sorted(unknown))}")
        robot: Principal | None = None
        if "robot" in changes:
            robot = self._robot(name, changes["robot"])

        def decide(mirror: Mirror, ctx: EventContext) -> None:
            current = mirror.settings
            not_settings = ("is_enabled", "sync_start_ms", "password", "username")
            settings = replace(
                current, **{k: v for k, v in changes.items() if k not in not_settings}
            )
            if "username" in changes:
                if changes["username"] is None:
                    settings = replace(settings, username=None, credentials=None)
                else:
                    settings = replace(settings, username=changes["username"])
            if changes.get("password") is not None:
                settings = replace(settings, credentials=self._seal(name, changes["password"]))
            elif "password" in changes:
                settings = replace(settings, credentials=None)
            settings.check()  # refuses a password without a username, too
            mirror.change(settings, changes.get("sync_start_ms"), ctx)
            if "is_enabled" in changes:
                mirror.set_enabled(bool(changes["is_enabled"]), ctx)

        self._execute(name, caller, decide)
        if robot is not None:
            self._admit(name, robot, caller)

    def sync_now(self, name: RepositoryName, caller: Caller) -> None:
        self._execute(name, caller, lambda mirror, ctx: mirror.request_sync(ctx))

    def cancel(self, name: RepositoryName, caller: Caller) -> None:
        self._execute(name, caller, lambda mirror, ctx: mirror.cancel(ctx))

    def change_state(self, name: RepositoryName, state: RepositoryState, caller: Caller) -> None:
        """Quay's ``changestate``."""
        self.registry.set_state(name, state, caller)

    # -- the sync's steps (see ``mirror_sync.py``) ---------------------------------------

    def step(
        self, name: RepositoryName, caller: Caller, decide: Callable[[Mirror, EventContext], None]
    ) -> None:
        """Run one step of a sync (claim, plan, a tag, the end) on the mirror's stream."""
        self._execute(name, caller, decide)

    # -- helpers -----------------------------------------------------------------------

    def _find(self, name: RepositoryName) -> Mirror | None:
        """The repository's live mirror (None: never configured, or deleted)."""
        mirror: Mirror | None = self.unit.find(mirror_id(self.unit.site_id, name))
        return None if mirror is None or mirror.deleted else mirror

    def _execute(
        self,
        name: RepositoryName,
        caller: Caller,
        decide: Callable[[Mirror, EventContext], None],
    ) -> None:
        def load(ctx: EventContext) -> Mirror:
            mirror = self._find(name)
            if mirror is None:
                raise MirrorUnknown(f"repository {name} has no mirror")
            return mirror

        self.unit.execute(
            mirror_id(self.unit.site_id, name),
            caller,
            load,
            decide,
            busy=f"the mirror of {name} is too busy; try again",
        )

    def _robot(self, name: RepositoryName, robot: str) -> Principal:
        """The robot principal ``ns+short`` of the repository's own namespace."""
        namespace, plus, short = (robot or "").partition("+")
        if not plus or not short:
            raise InvalidInput("robot_username must be a robot account (namespace+name)")
        if namespace != name.namespace:
            raise InvalidInput(f"robot {robot} is not of namespace {name.namespace}")
        if self.robots.robot(namespace, short) is None:
            raise InvalidInput(f"robot {robot} does not exist")
        return Principal.robot(namespace, short)

    def _admit(self, name: RepositoryName, robot: Principal, caller: Caller) -> None:
        """The robot may write (unless it may do more already); the repository is a
        mirror."""
        repo = self.registry.current(name)
        held = repo.permissions.get(robot) if repo is not None else None
        if held is None or held < RepositoryRole.WRITE:
            self.registry.grant(name, robot, RepositoryRole.WRITE, caller)
        self.registry.set_state(name, RepositoryState.MIRROR, caller)

    def _settings(self, name: RepositoryName, given: MirrorInput) -> MirrorSettings:
        sealed = self._seal(name, given.password) if given.password is not None else None
        return MirrorSettings(
            external_reference=given.external_reference,
            sync_interval_s=given.sync_interval_s,
            robot=given.robot,
            tag_globs=given.tag_globs,
            username=given.username or None,
            credentials=sealed,
            verify_tls=given.verify_tls,
            unsigned_images=given.unsigned_images,
            proxy=given.proxy,
            timeout_s=given.timeout_s,
            architectures=given.architectures,
        )

    def _seal(self, name: RepositoryName, password: str) -> bytes:
        return self.secrets.seal(password.encode(), _context(name))


def _context(name: RepositoryName) -> str:
    """What a mirror's password is bound to: its repository."""
    return f"mirror:{name}"
