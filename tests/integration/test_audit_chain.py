"""Tamper evidence (issue 6, point 5): stored rows are edited, deleted, swapped and forged
directly in SQLite and PostgreSQL, and ``audit-verify`` names each change."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cargohold.bootstrap import Container
from cargohold.domain.values import RepositoryName, Tag
from cargohold.projections.audit.chain import AuditChain
from cargohold.projections.audit.chain_format import GENESIS
from cargohold.projections.audit.chain_verify import Problem
from tests.factories import ALICE, push_image

NAME = RepositoryName("acme/app")


def _fill(container: Container, tags: int = 6) -> int:
    image = push_image(container, "acme/app", "v1")
    for i in range(tags):
        container.registry.tag(NAME, Tag(f"t{i}"), image.digest, ALICE)
    push_image(container, "other/repo", "latest")
    return int(container.log.recorder.max_notification_id() or 0)


class Tamper:
    """Direct edits of the stored log, as someone with write access to the database."""

    def __init__(self, container: Container) -> None:
        self.container = container
        recorder: Any = container.log.recorder
        self.table = recorder.events_table_name
        self.postgres = container.settings.uses_postgres
        self.id = "notification_id" if self.postgres else "rowid"

    @contextmanager
    def _sql(self) -> Iterator[Any]:
        if self.postgres:
            with self.container.views_db.transaction() as c:
                yield c
        else:
            db = sqlite3.connect(Path(self.container.settings.data_dir) / "events.sqlite")
            try:
                with db:
                    yield db
            finally:
                db.close()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self._sql() as c:
            c.execute(sql.replace("{t}", self.table).replace("{id}", self.id), params)

    def flip_a_byte(self, position: int) -> None:
        # NOTE: the statements below are the same on both databases once "?" is mapped.
        with self._sql() as c:
            row = c.execute(
                f"SELECT state FROM {self.table} WHERE {self.id} = ?", (position,)
            ).fetchone()
            state = bytearray(row[0])
            state[len(state) // 2] ^= 0x01
            c.execute(
                f"UPDATE {self.table} SET state = ? WHERE {self.id} = ?", (bytes(state), position)
            )

    def delete(self, position: int) -> None:
        self._run("DELETE FROM {t} WHERE {id} = ?", (position,))

    def swap(self, a: int, b: int) -> None:
        with self._sql() as c:
            for old, new in ((a, -1), (b, a), (-1, b)):
                c.execute(f"UPDATE {self.table} SET {self.id} = ? WHERE {self.id} = ?", (new, old))


def _chain(container: Container, **kwargs: Any) -> AuditChain:
    return AuditChain(container.views_db, container.log.recorder, container.signer, **kwargs)


def _kinds(problems: list[Problem]) -> list[tuple[str, int]]:
    return [(p.kind, p.position) for p in problems]


def test_an_untouched_log_verifies(container: Container) -> None:
    head = _fill(container)
    chain = container.audit_chain
    assert chain.seal() == head
    chain.checkpoint()
    report = chain.verify()
    assert report.intact, report.problems
    assert (report.events, report.sealed_position, report.unsealed) == (head, head, 0)
    assert report.checkpoints >= 1
    assert report.last_checkpoint is not None and report.last_checkpoint[0] == head


def test_new_events_are_unsealed_until_sealed(container: Container) -> None:
    head = _fill(container)
    container.audit_chain.seal()
    push_image(container, "acme/app", "later", seed="later")
    report = container.audit_chain.verify()
    assert report.intact and report.sealed_position == head
    assert report.unsealed == int(container.log.recorder.max_notification_id() or 0) - head > 0
    container.audit_chain.seal()
    assert container.audit_chain.verify().unsealed == 0


def test_an_edited_event_is_named(container: Container) -> None:
    _fill(container)
    container.audit_chain.seal()
    Tamper(container).flip_a_byte(5)
    problems = container.audit_chain.verify().problems
    assert _kinds(problems) == [("altered", 5)]
    assert "was changed" in problems[0].detail


def test_a_deleted_event_is_named(container: Container) -> None:
    head = _fill(container)
    container.audit_chain.seal()
    Tamper(container).delete(4)
    Tamper(container).delete(head)  # the last one too: a truncated tail
    assert _kinds(container.audit_chain.verify().problems) == [("deleted", 4), ("deleted", head)]


def test_swapped_events_are_named_as_moved(container: Container) -> None:
    _fill(container)
    container.audit_chain.seal()
    Tamper(container).swap(3, 7)
    problems = container.audit_chain.verify().problems
    assert _kinds(problems) == [("moved", 3), ("moved", 7)]
    assert "sealed at position 7" in problems[0].detail
    assert "sealed at position 3" in problems[1].detail


def test_rewriting_events_with_their_digests_breaks_the_signed_checkpoint(
    container: Container,
) -> None:
    head = _fill(container)
    chain = _chain(container, checkpoint_every=4)
    chain.seal()
    checkpoints = [p for p, *_ in chain._checkpoints()]
    assert checkpoints and checkpoints[0] == 4
    tamper = Tamper(container)
    tamper.flip_a_byte(6)
    # The forger also recomputes the digest they can see, and the unsigned running link.
    rows = container.log.recorder.select_notifications(start=6, limit=1)
    from cargohold.projections.audit.chain_format import row_digest

    with container.views_db.transaction() as c:
        c.execute(
            "UPDATE audit_chain SET digest = ? WHERE position = 6", (row_digest(rows[0]).hex(),)
        )
    problems = chain.verify().problems
    later = min(p for p in checkpoints if p >= 6)
    assert _kinds(problems) == [("chain-rewritten", later)]
    assert head >= later


def test_a_forged_checkpoint_is_refused(container: Container) -> None:
    _fill(container)
    chain = container.audit_chain
    chain.seal()
    chain.checkpoint()
    with container.views_db.transaction() as c:
        c.execute("UPDATE audit_checkpoints SET signature = ?", ("30" + "00" * 70,))
    kinds = {p.kind for p in chain.verify().problems}
    assert kinds == {"checkpoint-invalid"}


def test_sealers_racing_seal_each_event_once(container: Container) -> None:
    head = _fill(container, tags=30)
    first, second = _chain(container), _chain(container)
    sealed = 0
    while True:
        step = first.seal(limit=5) + second.seal(limit=7)
        if step == 0:
            break
        sealed += step
    with container.views_db.transaction(write=False) as c:
        count = c.execute("SELECT COUNT(*) FROM audit_chain").fetchone()
    assert count is not None and count[0] == head
    assert first.verify().intact


class _StaleOnce(AuditChain):
    """A sealer whose first read of the head is from before another sealer's batch."""

    stale: tuple[int, bytes] | None = (0, GENESIS)

    def head(self) -> tuple[int, bytes]:
        read, self.stale = self.stale, None
        return read or super().head()


def test_a_sealer_that_loses_a_race_yields_the_backlog_only_when_asked(
    container: Container,
) -> None:
    """Two workers' sealers in step would each hash every event; the chore's sealer
    leaves the backlog to the one that won, a plain ``seal`` goes on to the end."""
    head = _fill(container, tags=30)
    winner = _chain(container)
    assert winner.seal(limit=3) == 3
    for yielding, expected in ((True, 0), (False, head - 3)):
        stale = _StaleOnce(container.views_db, container.log.recorder, container.signer)
        assert stale.seal(yield_on_race=yielding) == expected
    with container.views_db.transaction(write=False) as c:
        count = c.execute("SELECT COUNT(*) FROM audit_chain").fetchone()
    assert count is not None and count[0] == head
    assert winner.verify().intact


def _cli(container: Container, *args: str) -> subprocess.CompletedProcess[str]:
    options = ["--data-dir", str(container.settings.data_dir), "--quiet"]
    if container.settings.uses_postgres:
        options += ["--database", container.settings.database]
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli", "replay", *args, *options],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.slow
def test_cli_seal_and_verify(container: Container) -> None:
    head = _fill(container)
    sealed = _cli(container, "audit-seal")
    assert sealed.returncode == 0, sealed.stderr
    assert f"sealed {head} events" in sealed.stdout
    ok = _cli(container, "audit-verify")
    assert ok.returncode == 0, ok.stderr
    assert "the log is intact" in ok.stdout
    Tamper(container).flip_a_byte(2)
    bad = _cli(container, "audit-verify")
    assert bad.returncode == 1
    assert "TAMPERED: first problem at position 2 (altered)" in bad.stdout
