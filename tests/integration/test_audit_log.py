"""The audit log on SQLite and PostgreSQL: entries folded from the log in the projection
pass, pulls and logins from the buffered access log, both merged by the queries, and
``replay`` rebuilding the one but never touching the other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cargohold.bootstrap import Container
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.errors import StorageError
from cargohold.domain.identity import AccountName, Principal, RepositoryRole
from cargohold.domain.ports import AccessRecord
from cargohold.domain.values import Actor, ActorKind, RepositoryName, Tag
from cargohold.projections.audit.queries import LogFilter
from tests.factories import ALICE, push_image
from tests.operations import rebuild, verify

NAME = RepositoryName("alice/app")
SYSTEM = Caller(Actor.system(), "req-system", "10.1.2.3")


def _everything() -> LogFilter:
    now = datetime.now(UTC)
    return LogFilter(
        start_ms=int((now - timedelta(days=1)).timestamp() * 1000),
        end_ms=int((now + timedelta(days=1)).timestamp() * 1000),
    )


def _fill(container: Container) -> str:
    container.identity.create_user(AccountName("alice"), "a@example.com", "alice-pw-1", SYSTEM)
    container.identity.create_user(AccountName("bob"), "b@example.com", "bob-pw-1", SYSTEM)
    first = push_image(container, "alice/app", "v1", seed="a")
    push_image(container, "alice/app", "v1", seed="b")
    container.registry.untag(NAME, Tag("v1"), ALICE)
    container.registry.grant(NAME, Principal.user("bob"), RepositoryRole.READ, SYSTEM)
    container.registry.grant(NAME, Principal.user("bob"), RepositoryRole.WRITE, SYSTEM)
    container.registry.delete_repository(NAME, ALICE)
    return str(first.digest)


def test_the_projection_writes_one_entry_per_event_with_quay_kinds(
    container: Container,
) -> None:
    first = _fill(container)
    entries = list(container.audit_queries.iterate(_everything()))
    got = [e.kind for e in reversed(entries)]  # oldest first
    assert got[:3] == ["user_create", "user_create", "create_repo"]
    assert got.count("push_repo") == 2
    assert "create_tag" in got and "move_tag" in got and "delete_tag" in got
    assert got[-3:] == ["add_repo_permission", "change_repo_permission", "delete_repo"]
    move = next(e for e in entries if e.kind == "move_tag")
    assert move.metadata["original_manifest_digest"] == first
    assert move.repository == "alice/app" and move.namespace == "alice"
    assert (move.performer_kind, move.performer_name, move.request_id) == (
        "user",
        "alice",
        "req-alice",
    )
    created = entries[-1]  # alice, by the system
    assert created.ip == "10.1.2.3" and created.performer_kind == "system"
    # The deleted repository's last entry still names it.
    assert entries[0].kind == "delete_repo" and entries[0].repository == "alice/app"
    # Positions are the notification ids, newest first.
    positions = [e.position for e in entries]
    assert positions == sorted(positions, reverse=True)  # type: ignore[type-var]


def test_replay_rebuilds_the_audit_log_and_keeps_the_access_log(container: Container) -> None:
    _fill(container)
    container.access_log.record(
        AccessRecord("pull_repo", datetime.now(UTC), Actor(ActorKind.USER, "alice"), "alice")
    )
    assert container.access_log.flush() == 1
    before = list(container.audit_queries.iterate(_everything()))
    with container.views_db.transaction() as c:
        c.execute("DELETE FROM audit_log WHERE kind = 'move_tag'")
    assert any(d.table == "audit_log" for d in verify(container, quiet=True).differences)
    rebuild(container, quiet=True)
    assert list(container.audit_queries.iterate(_everything())) == before
    assert sum(1 for e in before if e.source == "access") == 1


def test_pages_merge_both_tables_newest_first_without_gaps(container: Container) -> None:
    _fill(container)
    base = datetime.now(UTC)
    for i in range(30):
        container.access_log.record(
            AccessRecord(
                "pull_repo",
                base - timedelta(milliseconds=i * 7),
                Actor.anonymous(),
                "alice",
                "alice/app",
            )
        )
    container.access_log.flush()
    f = _everything()
    everything = list(container.audit_queries.iterate(f, chunk=1000))
    paged = []
    after = None
    while True:
        page, more = container.audit_queries.page(f, after, 7)
        paged.extend(page)
        if not more:
            break
        after = page[-1].key
    assert paged == everything
    keys = [e.key for e in everything]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert sum(1 for e in everything if e.source == "access") == 30


def test_a_failed_flush_keeps_the_entries_for_the_next(container: Container) -> None:
    log = container.access_log
    log.record(AccessRecord("pull_repo", datetime.now(UTC), Actor.anonymous(), "alice"))
    real = log._write

    def failing(batch: object) -> None:
        raise StorageError("database error: down")

    log._write = failing  # type: ignore[method-assign]
    try:
        log._flush_logged()
    finally:
        log._write = real  # type: ignore[method-assign]
    assert log.pending() == 1 and log.failures == 1
    assert log.flush() == 1 and log.pending() == 0


def test_the_aggregates_come_from_the_counts_and_replay_keeps_them_exact(
    container: Container,
) -> None:
    _fill(container)
    now = datetime.now(UTC)
    for i in range(5):
        container.access_log.record(
            AccessRecord(
                "pull_repo", now - timedelta(days=i % 2), Actor.anonymous(), "alice", "alice/app"
            )
        )
    container.access_log.flush()
    midnight = int(now.timestamp() * 1000) // 86_400_000 * 86_400_000
    q = container.audit_queries
    filters = [
        _everything(),
        LogFilter(midnight - 86_400_000, midnight + 86_400_000),  # whole days
        LogFilter(midnight - 86_400_000, midnight + 86_400_000, namespace="alice"),
        LogFilter(midnight - 86_400_000, midnight + 86_400_000, repository="alice/app"),
        LogFilter(midnight, midnight + 86_400_000, kinds=frozenset({"pull_repo", "push_repo"})),
    ]
    expected = [q.aggregate_raw(f) for f in filters]
    assert [q.aggregate(f) for f in filters] == expected
    assert sum(c.count for c in expected[3] if c.kind == "pull_repo") == 5
    # Drift in the counts view is a difference that rebuild repairs; the access counts,
    # not a view, are recounted from access_log by the same rebuild.
    with container.views_db.transaction() as c:
        c.execute("UPDATE audit_counts SET n = n + 1 WHERE scope = '*'")
        c.execute("DELETE FROM access_counts")
    assert any(d.table == "audit_counts" for d in verify(container, quiet=True).differences)
    rebuild(container, quiet=True)
    assert verify(container, quiet=True).differences == ()
    assert [q.aggregate(f) for f in filters] == expected


def test_views_made_before_the_origin_column_get_it_and_a_rebuild_fills_it(
    container: Container,
) -> None:
    """An ``audit_log`` without ``site_id`` (views of an earlier version) gets the
    column at the next start; its older entries have no origin until ``replay
    rebuild``, which gives every entry this site's."""
    push_image(container, "acme/app", "v1")
    with container.views_db.transaction() as c:
        c.execute("ALTER TABLE audit_log DROP COLUMN site_id")
    container.runner.create_tables()
    entries = list(container.audit_queries.iterate(_everything()))
    assert entries and {e.site_id for e in entries if e.source == "log"} == {None}
    push_image(container, "acme/app", "v2")
    newest = next(container.audit_queries.iterate(_everything()))
    assert newest.site_id == str(container.site_id)
    rebuild(container)
    assert {e.site_id for e in container.audit_queries.iterate(_everything())} == {
        str(container.site_id)
    }
