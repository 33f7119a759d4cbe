"""A real log and real views without the composition root: aggregates are saved through
``RegistryLog`` and folded by ``ProjectionRunner``, then read through ``IdentityQueries``.

The access tests build identity facts straight from the domain methods (no command
layer), so they prove the projection and the queries alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from cargohold.adapters.eventstore import LogReader, RegistryLog
from cargohold.adapters.postgres import PostgresDatabase
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.bootstrap import log_environment
from cargohold.config import Settings, load_settings
from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext
from cargohold.domain.identity import AccountName, NamespaceKind
from cargohold.domain.ports import Database
from cargohold.domain.repository import Repository
from cargohold.domain.values import Actor, ActorKind, RepositoryName
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.runner import ProjectionRunner


def sqlite_settings(data_dir: Path) -> Settings:
    return load_settings(environ={}, overrides={"data_dir": data_dir})


class IdentityLog:
    """One installation's log and views, driven directly by aggregates."""

    def __init__(self, settings: Settings, site_id: UUID | None = None) -> None:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        self.site_id = site_id or uuid4()
        self.clock = HybridLogicalClock()
        self.log = RegistryLog(log_environment(settings))
        self.db: Database = (
            PostgresDatabase(settings.postgres)
            if settings.uses_postgres
            else SQLiteDatabase(Path(settings.data_dir) / "views.sqlite")
        )
        self.runner = ProjectionRunner(self.db, LogReader(self.log))
        self.runner.create_tables()
        self.queries = IdentityQueries(self.db)

    def close(self) -> None:
        self.db.close()
        self.log.close()

    def ctx(self, actor: str = "admin") -> EventContext:
        return EventContext(Actor(ActorKind.USER, actor), self.site_id, self.clock.now(), "req")

    def save(self, *aggregates: Aggregate) -> None:
        """Save the aggregates' pending events in one ``save()`` and fold them."""
        self.log.save(*aggregates)
        self.runner.catch_up()

    # -- builders, each saved at once ----------------------------------------------------

    def user(self, name: str, email: str = "", superuser: bool = False) -> Account:
        account = Account.create(
            AccountName(name), email, "argon2-hash", self.ctx(), superuser=superuser
        )
        claim = NamespaceClaim.create(AccountName(name), NamespaceKind.USER, self.ctx())
        self.save(account, claim)
        return account

    def organization(self, name: str, owner: str) -> Organization:
        org = Organization.create(AccountName(name), AccountName(owner), self.ctx(owner))
        claim = NamespaceClaim.create(AccountName(name), NamespaceKind.ORGANIZATION, self.ctx())
        self.save(org, claim)
        return org

    def repository(self, name: str) -> Repository:
        repo = Repository.create(RepositoryName(name), self.ctx())
        self.save(repo)
        return repo

    def load(self, aggregate_id: UUID) -> Any:
        return self.log.repository.get(aggregate_id)
