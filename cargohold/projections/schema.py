"""The read models: table definitions, created the same on SQLite and PostgreSQL.

Two families: the registry's (repositories and what is in them, their grants) and
identity's (accounts, namespaces, organisations with members, teams, robots and default
permissions, API tokens). One projection writes both, so one tracking row covers both.

Every table lives in a *namespace*: ``""`` for the live views, or a scratch schema name
(``"scratch."``) into which ``replay`` rebuilds them. On SQLite a scratch namespace is an
attached database file; on PostgreSQL it is a schema.

``position`` columns hold the notification id of the event that last wrote the row, so a
rebuild from the same log produces identical rows, and a diff names the event.
"""

from __future__ import annotations

from dataclasses import dataclass

from cargohold.domain.ports import Cursor


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, portable type)
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


T = "TEXT"
I = "BIGINT"  # noqa: E741 - a column type, read as "integer"

TRACKING = Table("tracking", (("name", T), ("position", I)), key=("name",))

REPOSITORIES = Table(
    "repositories",
    (("id", T), ("name", T), ("visibility", T), ("created_at", T), ("position", I)),
    key=("id",),
    indexes=(("name",),),
)
BLOB_LINKS = Table(
    "blob_links",
    (("repository", T), ("digest", T), ("size", I), ("linked_at", T), ("position", I)),
    key=("repository", "digest"),
    # NOTE: (digest, repository) pages through the repositories holding a blob in name
    # order (a mount without ``from``) without sorting all of them.
    indexes=(("digest", "repository"),),
)
MANIFESTS = Table(
    "manifests",
    (
        ("repository", T),
        ("digest", T),
        ("media_type", T),
        ("size", I),
        ("config_digest", T),
        ("artifact_type", T),
        ("subject_digest", T),
        ("annotations", T),  # JSON object or NULL
        ("pushed_at", T),
        ("position", I),
    ),
    key=("repository", "digest"),
)
TAGS = Table(
    "tags",
    (("repository", T), ("tag", T), ("digest", T), ("updated_at", T), ("position", I)),
    key=("repository", "tag"),
    indexes=(("repository", "digest"),),
)
TAG_HISTORY = Table(
    "tag_history",
    (
        ("position", I),
        ("repository", T),
        ("tag", T),
        ("action", T),  # "move" | "delete"
        ("from_digest", T),
        ("to_digest", T),
        ("actor_kind", T),
        ("actor_name", T),
        ("site_id", T),
        ("hlc_wall", I),
        ("hlc_logical", I),
        ("request_id", T),
        ("at", T),
    ),
    key=("position",),
    indexes=(("repository", "tag", "position"),),
)
REFERRERS = Table(
    "referrers",
    (
        ("repository", T),
        ("subject_digest", T),
        ("digest", T),
        ("media_type", T),
        ("size", I),
        ("artifact_type", T),
        ("annotations", T),
        ("position", I),
    ),
    key=("repository", "subject_digest", "digest"),
)

REPOSITORY_PERMISSIONS = Table(
    "repository_permissions",
    (
        ("repository", T),
        ("principal_kind", T),  # "user" | "team" | "robot"
        ("principal_name", T),  # "alice" | "acme/owners" | "acme+builder"
        ("role", T),  # "read" | "write" | "admin"
        ("position", I),
    ),
    key=("repository", "principal_kind", "principal_name"),
    indexes=(("principal_kind", "principal_name"),),
)

# A deleted repository's stream id and name, so that ``Recreated`` (which carries no
# name) can bring its ``repositories`` row back. Written on ``Deleted`` rather than on
# ``Created`` so that views built before deletion existed need no backfill.
DELETED_REPOSITORIES = Table(
    "deleted_repositories",
    (("id", T), ("name", T), ("deleted_at", T), ("position", I)),
    key=("id",),
    indexes=(("name",),),
)

# The greatest event, in the merge order of the geo rules (``projections/merge.py``), that
# the views have folded for each repository name, over every site's stream of it: an
# event below it arrived late (from a peer) and makes the name's rows be folded again.
NAME_ORDERS = Table(
    "name_orders",
    (
        ("kind", T),  # "repository"
        ("name", T),
        ("hlc_wall", I),
        ("hlc_logical", I),
        ("site_id", T),
        ("stream", T),
        ("version", I),
    ),
    key=("kind", "name"),
)

# The origin of every named stream: ``kind`` ("repository" | "account" | "organization"
# | "namespace" for a NamespaceClaim), its name, and the site that created it (from the
# ``Created`` event). Streams imported from another site (``cargohold import``) are the
# ones whose ``site_id`` is not this installation's: their names are read-only here.
STREAM_ORIGINS = Table(
    "stream_origins",
    (("id", T), ("kind", T), ("name", T), ("site_id", T), ("position", I)),
    key=("id",),
    # NOTE: (site_id, kind, name) serves the check before every write (origins.py),
    # which looks only at other sites' rows, however many this site has.
    indexes=(("name", "kind"), ("site_id", "kind", "name")),
)

# -- identity and access ---------------------------------------------------------------
# NOTE: member columns are called ``username``: ``user`` is reserved in PostgreSQL.
# Secrets: password hashes never enter a view; robot and API token hashes do (sha256 of
# high-entropy tokens: looking one up is how a token is checked).

ACCOUNTS = Table(
    "accounts",
    (
        ("name", T),
        ("id", T),
        ("email", T),
        ("superuser", I),  # 0 | 1
        ("created_at", T),
        ("position", I),
    ),
    key=("name",),
    indexes=(("id",),),
)
NAMESPACES = Table(
    "namespaces",
    (("name", T), ("kind", T), ("position", I)),  # kind: "user" | "organization"
    key=("name",),
)
ORGANIZATIONS = Table(
    "organizations",
    (("name", T), ("id", T), ("created_at", T), ("position", I)),
    key=("name",),
    indexes=(("id",),),
)
ORG_MEMBERS = Table(
    "org_members",
    (("org", T), ("username", T), ("position", I)),
    key=("org", "username"),
    indexes=(("username",),),
)
TEAMS = Table(
    "teams",
    (
        ("org", T),
        ("team", T),
        ("role", T),  # "member" | "creator" | "admin"
        ("description", T),
        ("position", I),
    ),
    key=("org", "team"),
)
TEAM_MEMBERS = Table(
    "team_members",
    (("org", T), ("team", T), ("username", T), ("position", I)),
    key=("org", "team", "username"),
    indexes=(("username", "org"),),
)
ROBOTS = Table(
    "robots",
    (
        ("namespace", T),
        ("short_name", T),
        ("token_hash", T),
        ("description", T),
        ("created_at", T),
        ("position", I),
    ),
    key=("namespace", "short_name"),
)
DEFAULT_PERMISSIONS = Table(
    "default_permissions",
    (
        ("org", T),
        ("principal_kind", T),
        ("principal_name", T),
        ("role", T),
        ("position", I),
    ),
    key=("org", "principal_kind", "principal_name"),
)
API_TOKENS = Table(
    "api_tokens",
    (
        ("token_id", T),
        ("owner", T),
        ("token_hash", T),
        ("scopes", T),  # scope values, sorted, joined by one space
        ("expires_at", T),  # ISO 8601, UTC
        ("description", T),
        ("created_at", T),
        ("position", I),
    ),
    key=("token_id",),
    indexes=(("token_hash",), ("owner",)),
)

# -- the tag time machine (projections/time_machine.py) ----------------------------------
# One row per lifetime of a tag: from the event that pointed it at ``digest``
# (``start_position``, at ``start_ms``) to the one that ended it (``end_ms``: moved,
# restored elsewhere, deleted, expired, or NULL while live). ``expires_ms`` is the
# expiration set on a live tag (Quay's future ``lifetime_end``); a live tag whose
# ``expires_ms`` has passed is expired for every reader, before the sweeper records it.
# Times are HLC wall-clock milliseconds. ``size`` and ``is_manifest_list`` are copied from
# ``manifest_sizes`` when the lifetime starts, so they outlive the manifest.
TAG_LIFETIMES = Table(
    "tag_lifetimes",
    (
        ("repository", T),
        ("tag", T),
        ("start_position", I),
        ("digest", T),
        ("start_ms", I),
        ("end_ms", I),
        ("expires_ms", I),
        ("reversion", I),  # 0 | 1: started by a restore
        ("size", I),  # the layers' total, NULL for an index or a manifest pushed before
        ("is_manifest_list", I),  # 0 | 1
        ("position", I),
    ),
    key=("repository", "tag", "start_position"),
    indexes=(("repository", "start_ms"), ("expires_ms",)),
)
MANIFEST_SIZES = Table(
    "manifest_sizes",
    (
        ("repository", T),
        ("digest", T),
        ("layers_size", I),  # NULL for an index
        ("is_manifest_list", I),
        ("position", I),
    ),
    key=("repository", "digest"),
)
# A namespace's time-machine window, once set (absent: the installation's default).
NAMESPACE_SETTINGS = Table(
    "namespace_settings",
    (("name", T), ("tag_expiration_s", I), ("position", I)),
    key=("name",),
)

# -- the audit log ---------------------------------------------------------------------
# One entry per event (projections/audit/kinds.py). ``time_ms`` is the epoch-millisecond copy of
# ``time`` that range queries and keyset pages use; every index ends in the tie-breaker
# ``position`` so a page is one index range scan, newest first.

AUDIT_LOG = Table(
    "audit_log",
    (
        ("position", I),
        ("sequence", I),
        ("kind", T),
        ("time", T),
        ("time_ms", I),
        ("namespace", T),
        ("repository", T),
        ("performer_kind", T),
        ("performer_name", T),
        ("ip", T),
        ("request_id", T),
        ("metadata", T),  # JSON object
        ("site_id", T),  # the site whose log the event was written to (its origin)
    ),
    key=("position", "sequence"),
    indexes=(
        ("time_ms", "position"),
        ("namespace", "time_ms", "position"),
        ("repository", "time_ms", "position"),
        ("performer_name", "time_ms", "position"),
        ("kind", "time_ms", "position"),
    ),
)

# Entries per scope ('*' | 'n:<namespace>' | 'r:<ns/name>'), UTC day and kind, for the
# aggregates (projections/audit/counts.py); written with each ``audit_log`` entry.
AUDIT_COUNTS = Table(
    "audit_counts",
    (("scope", T), ("day", I), ("kind", T), ("n", I)),
    key=("scope", "day", "kind"),
)

# Repositories not in state NORMAL (Quay's READ_ONLY and MIRROR): the /v2 write paths
# ask it before they take a body.
REPOSITORY_STATES = Table(
    "repository_states",
    (("repository", T), ("state", T), ("position", I)),
    key=("repository",),
)
# Repository mirrors: their settings (never the password) and their sync's status and
# progress (projections/mirrors.py). Times are epoch ms.
MIRRORS = Table(
    "mirrors",
    (
        ("id", T),
        ("repository", T),
        ("is_enabled", I),
        ("external_reference", T),
        ("username", T),
        ("robot", T),
        ("sync_interval", I),
        ("tag_globs", T),  # JSON array
        ("verify_tls", I),
        ("unsigned_images", I),
        ("proxy", T),  # JSON object or NULL
        ("timeout_s", I),
        ("architectures", T),  # JSON array
        ("status", T),
        ("next_sync_ms", I),
        ("retries", I),
        ("claim", T),
        ("expires_ms", I),
        ("started_ms", I),
        ("ended_ms", I),
        ("tags_total", I),
        ("synced", I),
        ("failed", I),
        ("removed", I),
        ("bytes", I),
        ("last_error", T),
        ("position", I),
    ),
    key=("id",),
    indexes=(("repository",), ("next_sync_ms",)),
)
# Pull-through cache organisations (projections/proxy_caches.py): their settings (never
# the password) and their upstream's health. Times are epoch ms.
PROXY_CACHES = Table(
    "proxy_caches",
    (
        ("org", T),
        ("id", T),
        ("upstream_registry", T),
        ("username", T),
        ("expiration_s", I),
        ("insecure", I),
        ("failing", T),  # the upstream's failure while it lasts, else NULL
        ("failing_since_ms", I),
        ("configured_ms", I),
        ("position", I),
    ),
    key=("org",),
    indexes=(("id",),),
)
# When a cache's upstream last confirmed each cached tag (``Repository.TagRevalidated``):
# fresh while the tag still points at ``digest`` and ``expiration_s`` has not passed.
CACHED_TAGS = Table(
    "cached_tags",
    (("repository", T), ("tag", T), ("digest", T), ("validated_ms", I), ("position", I)),
    key=("repository", "tag"),
)

#: The views ``replay`` rebuilds and verifies (everything but the tracking table).
VIEW_TABLES: tuple[Table, ...] = (
    REPOSITORIES,
    BLOB_LINKS,
    MANIFESTS,
    TAGS,
    TAG_HISTORY,
    REFERRERS,
    REPOSITORY_PERMISSIONS,
    DELETED_REPOSITORIES,
    NAME_ORDERS,
    STREAM_ORIGINS,
    ACCOUNTS,
    NAMESPACES,
    ORGANIZATIONS,
    ORG_MEMBERS,
    TEAMS,
    TEAM_MEMBERS,
    ROBOTS,
    DEFAULT_PERMISSIONS,
    API_TOKENS,
    TAG_LIFETIMES,
    MANIFEST_SIZES,
    NAMESPACE_SETTINGS,
    REPOSITORY_STATES,
    MIRRORS,
    PROXY_CACHES,
    CACHED_TAGS,
    AUDIT_LOG,
    AUDIT_COUNTS,
)
ALL_TABLES: tuple[Table, ...] = (TRACKING, *VIEW_TABLES)


#: Secondary indexes the projection itself reads through (its name lookups by id).
PROJECTION_LOOKUPS: frozenset[tuple[str, tuple[str, ...]]] = frozenset(
    {("accounts", ("id",)), ("organizations", ("id",)), ("proxy_caches", ("id",))}
)

# Columns that later versions added to a table: added at every start to views made before
# (a no-op once there), NULL in their older rows until ``cargohold replay rebuild``.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("audit_log", "site_id", T),)

# Indexes that earlier versions made and a later one replaced: dropped at every start
# (a no-op once gone), so views kept across an upgrade do not keep maintaining them.
OBSOLETE_INDEXES = ("blob_links_digest_idx",)


def create_tables(
    c: Cursor, dialect: str, ns: str = "", *, indexes: bool = True, clustered: bool = False
) -> None:
    """Create every table (and its indexes) in namespace ``ns`` if absent. Idempotent.

    With ``indexes=False`` only the primary keys and ``PROJECTION_LOOKUPS`` are built:
    PERF: a replay fills fresh tables faster without the other indexes and builds them
    once at the end (``create_indexes``). ``clustered`` (SQLite only) stores each table
    in its primary key's b-tree (``WITHOUT ROWID``): one b-tree written per row instead
    of two, and rows read in key order without a lookup. PERF: for the scratch views a
    rebuild fills and then copies out in key order; it also makes every key column
    NOT NULL (SQLite's rowid tables allow NULL there), which views never store.
    """
    suffix = " WITHOUT ROWID" if clustered and dialect == "sqlite" else ""
    for table in ALL_TABLES:
        cols = ", ".join(f"{name} {kind}" for name, kind in table.columns)
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {ns}{table.name} "
            f"({cols}, PRIMARY KEY ({', '.join(table.key)})){suffix}"
        )
        for columns in table.indexes:
            if indexes or (table.name, columns) in PROJECTION_LOOKUPS:
                _create_index(c, dialect, ns, table, columns)
    for table_name, column, kind in ADDED_COLUMNS:
        _add_column(c, dialect, ns, table_name, column, kind)
    for index in OBSOLETE_INDEXES:
        c.execute(f"DROP INDEX IF EXISTS {ns}{index}")


def _add_column(c: Cursor, dialect: str, ns: str, table: str, column: str, kind: str) -> None:
    """Add ``column`` to ``table`` in namespace ``ns`` unless it has it."""
    if dialect == "sqlite":
        schema = ns.rstrip(".") or "main"
        have = {row[1] for row in c.execute(f"PRAGMA {schema}.table_info({table})").fetchall()}
        if column not in have:
            c.execute(f"ALTER TABLE {ns}{table} ADD COLUMN {column} {kind}")
    else:
        # NOTE: asked first: even a no-op ALTER TABLE takes the table's exclusive lock,
        # which would queue every reader behind the longest open transaction at start.
        schema = ns.rstrip(".")
        found = c.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = "
            + ("?" if schema else "current_schema()")
            + " AND table_name = ? AND column_name = ?",
            (schema, table, column) if schema else (table, column),
        ).fetchone()
        if found is None:
            c.execute(f"ALTER TABLE {ns}{table} ADD COLUMN IF NOT EXISTS {column} {kind}")


def create_indexes(c: Cursor, dialect: str, ns: str = "") -> None:
    """Create every secondary index in namespace ``ns`` if absent. Idempotent."""
    for table in ALL_TABLES:
        for columns in table.indexes:
            _create_index(c, dialect, ns, table, columns)


def drop_indexes(c: Cursor, dialect: str, ns: str = "") -> None:
    """Drop every secondary index in namespace ``ns`` that ``create_indexes`` makes."""
    for table in ALL_TABLES:
        for columns in table.indexes:
            c.execute(f"DROP INDEX IF EXISTS {ns}{_index_name(table, columns)}")


def _index_name(table: Table, columns: tuple[str, ...]) -> str:
    return f"{table.name}_{'_'.join(columns)}_idx"


def _create_index(c: Cursor, dialect: str, ns: str, table: Table, columns: tuple[str, ...]) -> None:
    index = _index_name(table, columns)
    # NOTE: SQLite puts the schema on the index name, PostgreSQL on the table
    # (an index lives in its table's schema).
    if dialect == "sqlite":
        target = f"{ns}{index} ON {table.name}"
    else:
        target = f"{index} ON {ns}{table.name}"
    c.execute(f"CREATE INDEX IF NOT EXISTS {target} ({', '.join(columns)})")
