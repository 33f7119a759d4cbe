"""How fast the audit-log queries answer over a million entries (issue 6: under 200 ms).

``python -m bench.audit_query [--rows N] [--postgres URL] [--dir DIR]`` creates fresh
views (SQLite in DIR, default a temporary directory; or the PostgreSQL database at URL,
whose audit tables it empties), inserts N realistic ``audit_log`` rows directly (30 days,
50 namespaces of 20 repositories, 200 performers, Quay's kind mix: mostly pushes and tag
moves) plus N/10 ``access_log`` pulls, then times, through ``AuditQueries`` (what the
endpoints call), the first page of a repository's logs, an organisation's logs filtered
by performer, the superuser's logs filtered by a kind, the 50th page of the superuser's
logs (keyset: 49 tokens followed), and the aggregates: 30 days of a repository, an
organisation and everything (also with two kinds, or a performer), and the default range
(now - 1 day .., partial days). Each aggregate is first checked equal to counting the raw
rows (``aggregate_raw``, untimed). Each figure is the median of 5 runs after one warm-up.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cargohold.adapters.postgres import PostgresDatabase
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.config import load_settings
from cargohold.domain.ports import Database
from cargohold.projections.access_log import create_access_log_table, recount_access
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.counts import DAY_MS
from cargohold.projections.audit.queries import AuditQueries, LogFilter
from cargohold.projections.schema import create_tables

KIND_MIX = [
    ("push_repo", 30),
    ("create_tag", 10),
    ("move_tag", 25),
    ("link_blob", 20),
    ("delete_tag", 5),
    ("create_repo", 2),
    ("add_repo_permission", 2),
    ("change_repo_permission", 1),
    ("create_robot", 1),
    ("org_add_team_member", 1),
    ("delete_repo", 1),
]
NAMESPACES = [f"org{i:02d}" for i in range(50)]
PERFORMERS = [f"user{i:03d}" for i in range(200)]
DAYS = 30
BATCH = 20_000


def _rows(n: int, now_ms: int, seed: int) -> Any:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    kinds = [k for k, w in KIND_MIX for _ in range(w)]
    span = DAYS * DAY_MS
    # Increasing times with positions, as the projection writes them.
    times = sorted(now_ms - rng.randrange(span) for _ in range(n))
    for i, t in enumerate(times):
        ns = rng.choice(NAMESPACES)
        repo = f"{ns}/repo{rng.randrange(20):02d}"
        kind = rng.choice(kinds)
        performer = rng.choice(PERFORMERS)
        meta = (
            f'{{"manifest_digest":"sha256:{rng.getrandbits(256):064x}",'
            f'"namespace":"{ns}","repo":"{repo.split("/")[1]}"}}'
        )
        yield (
            i + 1,
            kind,
            time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t / 1000)),
            t,
            ns,
            repo,
            "user",
            performer,
            f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            f"{rng.getrandbits(64):016x}",
            meta,
        )


def populate(db: Database, n: int, now_ms: int) -> None:
    with db.transaction() as c:
        create_tables(c, db.dialect)
        create_access_log_table(c, db.dialect)
        c.execute("DELETE FROM audit_log")
        c.execute("DELETE FROM access_log")
    audit_sql = (
        "INSERT INTO audit_log (position, sequence, kind, time, time_ms, namespace, "
        "repository, performer_kind, performer_name, ip, request_id, metadata) "
        "VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    access_sql = (
        "INSERT INTO access_log (kind, time, time_ms, namespace, repository, performer_kind, "
        "performer_name, ip, request_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for table_sql, count, seed, access in (
        (audit_sql, n, 1, False),
        (access_sql, n // 10, 2, True),
    ):
        batch: list[tuple[Any, ...]] = []
        for row in _rows(count, now_ms, seed):
            if access:
                row = ("pull_repo", *row[2:])
            batch.append(row)
            if len(batch) >= BATCH:
                with db.transaction() as c:
                    c.executemany(table_sql, batch)
                batch.clear()
        if batch:
            with db.transaction() as c:
                c.executemany(table_sql, batch)
    with db.transaction() as c:
        # NOTE: the rows went in directly, so their counts are computed once here (the
        # projection and the flush keep them as they go).
        audit_counts.recount(c, "audit_log", audit_counts.AUDIT_COUNTS)
        recount_access(c, db.dialect)
    with db.transaction() as c:
        c.execute("ANALYZE")


def timed(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    result = fn()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, result


def measure(db: Database, now_ms: int) -> list[tuple[str, float, str]]:
    q = AuditQueries(db)
    day = LogFilter(now_ms - DAY_MS, now_ms + DAY_MS)  # the endpoints' default range
    month = LogFilter(now_ms - DAYS * DAY_MS, now_ms + DAY_MS)

    def with_(base: LogFilter, **kw: Any) -> LogFilter:
        return LogFilter(**{**base.__dict__, **kw})

    def deep_page() -> Any:
        after = None
        f = with_(month)
        for _ in range(49):
            page, _more = q.page(f, after, 20)
            after = page[-1].key
        return q.page(f, after, 20)

    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "repository logs, first page (1 day)",
            lambda: q.page(with_(day, repository="org07/repo03"), None, 20),
        ),
        (
            "repository logs, first page (30 days)",
            lambda: q.page(with_(month, repository="org07/repo03"), None, 20),
        ),
        (
            "org logs + performer (30 days)",
            lambda: q.page(with_(month, namespace="org07", performer="user042"), None, 20),
        ),
        (
            "superuser logs + kind delete_repo (30 days)",
            lambda: q.page(with_(month, kinds=frozenset({"delete_repo"})), None, 20),
        ),
        (
            "superuser logs + 2 kinds (30 days)",
            lambda: q.page(
                with_(month, kinds=frozenset({"delete_repo", "create_robot"})), None, 20
            ),
        ),
        ("superuser logs, page 50 (49 tokens followed)", deep_page),
        ("superuser logs, one page after 49 (just the 50th)", lambda: None),  # set below
    ]
    # The cost of one deep page on its own: the key of page 49, then page 50.
    after = None
    for _ in range(49):
        page, _more = q.page(month, after, 20)
        after = page[-1].key
    key = after
    cases[6] = (cases[6][0], lambda: q.page(month, key, 20))
    aggregates = [
        ("repository aggregate (30 days)", with_(month, repository="org07/repo03")),
        ("org aggregate (30 days)", with_(month, namespace="org07")),
        ("superuser aggregate (30 days)", month),
        (
            "superuser aggregate (30 days, 2 kinds)",
            with_(month, kinds=frozenset({"push_repo", "pull_repo"})),
        ),
        ("superuser aggregate (default: now - 1 day ..)", day),
        (
            "org aggregate + performer (30 days)",
            with_(month, namespace="org07", performer="user042"),
        ),
        ("superuser aggregate + performer (30 days)", with_(month, performer="user042")),
    ]
    for name, f in aggregates:
        # NOTE: each answer must equal counting the raw rows (checked once, untimed).
        if q.aggregate(f) != q.aggregate_raw(f):
            raise AssertionError(f"{name}: the counts differ from the raw rows")
        cases.append((name, functools.partial(q.aggregate, f)))
    out = []
    for name, fn in cases:
        ms, result = timed(fn)
        size = len(result) if isinstance(result, list) else len(result[0])
        out.append((name, ms, f"{size} rows"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="postgres://user:pass@host:port/db (emptied!)")
    parser.add_argument("--dir", type=Path, help="where the SQLite views go")
    args = parser.parse_args(argv)
    now_ms = int(time.time() * 1000)
    db: Database
    if args.postgres:
        settings = load_settings(environ={}, overrides={"database": args.postgres})
        db = PostgresDatabase(settings.postgres)
        label = "PostgreSQL"
    else:
        directory = args.dir or Path(tempfile.mkdtemp(prefix="audit-bench-"))
        directory.mkdir(parents=True, exist_ok=True)
        db = SQLiteDatabase(directory / "views.sqlite")
        label = f"SQLite ({directory})"
    started = time.perf_counter()
    populate(db, args.rows, now_ms)
    print(
        f"{label}: {args.rows} audit rows + {args.rows // 10} pulls inserted "
        f"in {time.perf_counter() - started:.0f} s"
    )
    print(f"{'query':<52} {'median ms':>10}  result")
    for name, ms, result in measure(db, now_ms):
        flag = "" if ms < 200 else "  OVER 200 ms"
        print(f"{name:<52} {ms:>10.1f}  {result}{flag}")
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
