"""The log reader's own SQLite path makes exactly the library mapper's events, for a
log holding every kind of event the generator of the replay benchmark writes."""

from __future__ import annotations

from pathlib import Path

from bench.eventlog import generate
from cargohold.adapters.eventstore import LogReader
from cargohold.bootstrap import bootstrap
from cargohold.config import load_settings


def test_fast_sqlite_reads_equal_the_library_mapper(tmp_path: Path) -> None:
    written = generate(tmp_path / "d", 3_000, catch_up=False)
    c = bootstrap(load_settings(environ={}, overrides={"data_dir": tmp_path / "d"}))
    try:
        reader = LogReader(c.log)
        fast = reader.read(0, 10_000)
        slow = [
            (n.id, c.log.mapper.to_domain_event(n))
            for n in c.log.recorder.select_notifications(start=1, limit=10_000)
        ]
        assert len(fast) == len(slow) == written >= 3_000
        kinds = set()
        for (fast_id, fast_event), (slow_id, slow_event) in zip(fast, slow, strict=True):
            assert fast_id == slow_id
            assert type(fast_event) is type(slow_event)
            assert fast_event.__dict__ == slow_event.__dict__
            kinds.add(type(fast_event).__qualname__)
        assert {"Repository.TagMoved", "Repository.ManifestPushed", "Organization.Created"} <= kinds
        # stop and after bound the window as the protocol says
        assert [p for p, _ in reader.read(10, 5, stop=12)] == [11, 12]
    finally:
        c.close()


def test_batched_projection_equals_one_event_per_transaction(tmp_path: Path) -> None:
    """Queued writes (one executemany per run, names remembered per batch, indexes
    built late in a replay) give the rows that applying event by event gives."""
    from cargohold.adapters.sqlite import SQLiteDatabase
    from cargohold.projections.runner import ProjectionRunner
    from cargohold.projections.schema import VIEW_TABLES
    from tests.operations import rebuild

    generate(tmp_path / "d", 2_000, catch_up=False)
    c = bootstrap(load_settings(environ={}, overrides={"data_dir": tmp_path / "d"}))
    one_db = SQLiteDatabase(tmp_path / "one-by-one.sqlite")
    try:
        index_sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        with c.views_db.transaction(write=False) as live:
            indexes_before = live.execute(index_sql).fetchall()
        rebuild(c, quiet=True)  # batches of 5000, deferred indexes, then the swap
        with c.views_db.transaction(write=False) as live:
            assert live.execute(index_sql).fetchall() == indexes_before  # rebuilt alike
        one = ProjectionRunner(one_db, LogReader(c.log), batch_size=1)
        one.create_tables()
        assert one.catch_up() == c.runner.position() >= 2_000
        for table in VIEW_TABLES:
            cols = ", ".join(table.column_names)
            order = ", ".join(table.key)
            sql = f"SELECT {cols} FROM {table.name} ORDER BY {order}"
            with c.views_db.transaction(write=False) as live, one_db.transaction() as ref:
                assert live.execute(sql).fetchall() == ref.execute(sql).fetchall(), table.name
        with c.views_db.transaction(write=False) as live:
            assert live.execute("SELECT count(*) FROM tag_history").fetchone() != (0,)
    finally:
        one_db.close()
        c.close()
