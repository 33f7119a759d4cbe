"""The upload-session table: which repository each staged upload belongs to.

Lives in the views database (SQLite file or PostgreSQL), shared by every process, but it
is not a read model: nothing in the log describes uploads in progress.
"""

from __future__ import annotations

from cargohold.domain.ports import Database
from cargohold.domain.values import RepositoryName


class SQLUploadSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_table(self) -> None:
        with self.db.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS upload_sessions "
                "(id TEXT PRIMARY KEY, repository TEXT NOT NULL, started_at DOUBLE PRECISION)"
            )

    def add(self, upload_id: str, repository: RepositoryName, started_at: float) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO upload_sessions (id, repository, started_at) VALUES (?, ?, ?)",
                (upload_id, str(repository), started_at),
            )

    def repository_of(self, upload_id: str) -> str | None:
        rows = self.db.query("SELECT repository FROM upload_sessions WHERE id = ?", (upload_id,))
        return None if not rows else str(rows[0][0])

    def remove(self, upload_id: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM upload_sessions WHERE id = ?", (upload_id,))

    def started_before(self, moment: float) -> list[str]:
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT id FROM upload_sessions WHERE started_at < ?", (moment,)
            ).fetchall()
        return [str(r[0]) for r in rows]
