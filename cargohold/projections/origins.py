"""Which names belong to streams of other sites: the query facade over ``stream_origins``.

A stream's id is ``uuid5(origin site, name)``, so a command at this site computes the
*local* id of a name. A name whose streams were imported from another site
(``cargohold import``) must therefore never be written here: the command would find no
local stream and start a second one for the same name, which the views cannot hold.
Such names are read-only at this site, like a mirror. At a site with geo peers
(``geo``) they are not: the sites are one registry, a command on a repository folds
every site's stream of its name (``domain/repository_merge.py``) and writes this site's,
and a superuser of any site is one here. This facade answers the commands' and the auth
layer's questions; it implements ``commands.replicas.Replicas``.

Views built before ``stream_origins`` existed lack the rows of older (local) streams
until ``cargohold replay rebuild``; that is harmless here, because only *foreign* rows
matter and every imported stream was applied after the table existed.
"""

from __future__ import annotations

from uuid import UUID

from cargohold.domain.ports import Database
from cargohold.domain.values import RepositoryName


class StreamOrigins:
    def __init__(self, db: Database, site_id: UUID, geo: bool = False) -> None:
        self.db = db
        self.site_id = site_id
        self.geo = geo

    def _foreign_sites(self) -> list[str]:
        """The other sites that have streams here (most often none).

        PERF: one index seek per site, plus two: this site's own rows, however many,
        are never read. Asked before every write, in a namespace that may hold tens of
        thousands of this site's repositories.
        """
        me = str(self.site_id)
        found: list[str] = []
        for comparison, order in (("<", "DESC"), (">", "ASC")):
            bound = me
            while rows := self.db.query(
                f"SELECT site_id FROM stream_origins WHERE site_id {comparison} ? "
                f"ORDER BY site_id {order} LIMIT 1",
                (bound,),
            ):
                bound = str(rows[0][0])
                found.append(bound)
        return found

    def _foreign(
        self, pairs: list[tuple[str, str]], namespace: str | None = None
    ) -> tuple[UUID, UUID] | None:
        """``(stream id, origin site)`` of the first foreign stream among ``(kind, name)``,
        or (given ``namespace``) among the repositories in that namespace."""
        sites = self._foreign_sites()
        if not sites:
            return None
        # NOTE: one branch per site and question, each an exact seek in the
        # (site_id, kind, name) index; an OR of them would let the planner scan.
        branches: list[str] = []
        params: list[str] = []
        select = "SELECT id, site_id, position FROM stream_origins WHERE site_id = ? "
        for site in sites:
            for kind, name in pairs:
                branches.append(select + "AND kind = ? AND name = ?")
                params += [site, kind, name]
            if namespace is not None:
                # NOTE: a range rather than LIKE (whose _ would match any character);
                # "0" is the character after "/": every name starting "<namespace>/".
                branches.append(select + "AND kind = 'repository' AND name >= ? AND name < ?")
                params += [site, f"{namespace}/", f"{namespace}0"]
        rows = self.db.query(" UNION ALL ".join(branches) + " ORDER BY position LIMIT 1", params)
        return None if not rows else (UUID(rows[0][0]), UUID(rows[0][1]))

    def repository_origin(self, name: RepositoryName) -> UUID | None:
        """The other site that owns repository ``name`` or its namespace (or repositories
        in it); None when both are this site's or unknown, and at a geo site."""
        if self.geo:
            return None
        namespace = name.namespace
        found = self._foreign(
            [("repository", str(name)), ("namespace", namespace)], namespace=namespace
        )
        return None if found is None else found[1]

    def repository_streams(self, name: RepositoryName) -> list[UUID]:
        """The streams of repository ``name`` that other sites wrote, which a command at
        a geo site folds with this site's own; none elsewhere."""
        if not self.geo or not self._foreign_sites():
            return []
        rows = self.db.query(
            "SELECT id FROM stream_origins WHERE kind = 'repository' AND name = ? "
            "AND site_id <> ? ORDER BY id",
            (str(name), str(self.site_id)),
        )
        return [UUID(str(row[0])) for row in rows]

    def superuser_here(self, name: str) -> bool:
        """Whether a superuser account ``name`` is a superuser at this site: one of this
        site's, or of any site of a geo registry (never one imported by bundle)."""
        return self.geo or self.foreign_account(name) is None

    def namespace_origin(self, name: str) -> UUID | None:
        """The other site that owns the user or organisation ``name``, or repositories in
        that namespace (imported where it has no owner); None otherwise."""
        found = self._foreign([("namespace", name)], namespace=name)
        return None if found is None else found[1]

    def foreign_account(self, name: str) -> UUID | None:
        """The stream id of the account ``name`` imported from another site; None when
        the account is this site's or unknown."""
        found = self._foreign([("account", name)])
        return None if found is None else found[0]

    def identity_stream(self, kind: str, name: str) -> UUID | None:
        """The stream holding the account, organisation or namespace ``name`` here
        (``kind`` as in ``stream_origins``), or None (``replay/geo_store.NameOwners``)."""
        rows = self.db.query(
            "SELECT id FROM stream_origins WHERE name = ? AND kind = ? LIMIT 1", (name, kind)
        )
        if rows:
            return UUID(str(rows[0][0]))
        # NOTE: views older than stream_origins: the account and organisation views.
        table = {"account": "accounts", "organization": "organizations"}.get(kind)
        if table is None:
            rows = self.db.query("SELECT 1 FROM namespaces WHERE name = ?", (name,))
            return None if not rows else UUID(int=0)
        rows = self.db.query(f"SELECT id FROM {table} WHERE name = ?", (name,))
        return None if not rows else UUID(str(rows[0][0]))
