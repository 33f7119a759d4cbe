"""Names imported from other sites (``cargohold import``) are read-only here.

Every service asks ``Replicas`` before it writes a name, and refuses with
``ReplicatedReadOnly`` (``replicated``) when another site owns it. At a site with geo
peers, repositories are not: the registry's commands fold every site's stream of the
name (``repository_streams``) and write this site's.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from cargohold.domain.errors import ReplicatedReadOnly
from cargohold.domain.values import RepositoryName


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

    def repository_streams(self, name: RepositoryName) -> list[UUID]:
        """At a site with geo peers, the other sites' streams of repository ``name``,
        which the registry's commands fold with this site's (``repository_merge``)."""

    def superuser_here(self, name: str) -> bool:
        """Whether the superuser account ``name`` is a superuser at this site (not one
        imported by bundle from another installation)."""


class NoReplicas:
    """A site that never imported anything (tools and tests)."""

    def repository_origin(self, name: RepositoryName) -> UUID | None:
        return None

    def namespace_origin(self, name: str) -> UUID | None:
        return None

    def foreign_account(self, name: str) -> UUID | None:
        return None

    def repository_streams(self, name: RepositoryName) -> list[UUID]:
        return []

    def superuser_here(self, name: str) -> bool:
        return True


def replicated(what: str, site: UUID) -> ReplicatedReadOnly:
    return ReplicatedReadOnly(
        f"{what} is replicated from site {site} and is managed there (read-only here)"
    )
