"""Queued view writes give the same rows as unbatched ones (issue 5, replay speed)."""

from __future__ import annotations

from pathlib import Path

from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.projections.writes import BatchedWrites


def test_reads_see_every_queued_write_in_order(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "v.sqlite")
    with db.transaction() as c:
        c.execute("CREATE TABLE a (k TEXT PRIMARY KEY, v INT)")
        c.execute("CREATE TABLE b (k TEXT PRIMARY KEY)")
    upsert = "INSERT INTO a (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    with db.transaction() as c:
        w = BatchedWrites(c)
        w.defer("a", upsert, ("x", 1))
        w.defer("b", "INSERT INTO b (k) VALUES (?)", ("x",))
        w.defer("a", upsert, ("x", 2))  # same statement, later: must win
        w.defer("a", "DELETE FROM a WHERE k = ?", ("x",))
        w.defer("a", upsert, ("y", 3))
        assert w.execute("SELECT k, v FROM a ORDER BY k").fetchall() == [("y", 3)]
        w.defer("b", "DELETE FROM b WHERE k = ?", ("x",))
        w.flush()
        assert w.execute("SELECT count(*) FROM b").fetchone() == (0,)
    db.close()
