"""replay rebuild / verify on SQLite and PostgreSQL, as functions and through the CLI."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cargohold.bootstrap import Container
from cargohold.domain.values import RepositoryName, Tag
from tests.factories import ALICE, push_image
from tests.operations import rebuild, verify

NAME = RepositoryName("acme/app")


def _fill(container: Container) -> None:
    image = push_image(container, "acme/app", "v1")
    push_image(container, "acme/app", "v1", seed="b")
    push_image(container, "acme/app", None, seed="sig", subject=image.digest, artifact_type="a/b")
    push_image(container, "other/repo", "latest")
    container.registry.untag(NAME, Tag("v1"), ALICE)


def _tamper(container: Container) -> None:
    with container.views_db.transaction() as c:
        c.execute("UPDATE repositories SET name = 'forged/name' WHERE name = 'other/repo'")
        c.execute("DELETE FROM tag_history WHERE action = 'delete'")


def test_verify_finds_nothing_on_healthy_views(container: Container) -> None:
    _fill(container)
    result = verify(container, quiet=True)
    assert result.differences == ()
    assert result.events == container.runner.position() > 0


def test_verify_names_every_drifted_row(container: Container) -> None:
    _fill(container)
    _tamper(container)
    found = {(d.table, d.side) for d in verify(container, quiet=True).differences}
    assert found == {
        ("repositories", "live only"),
        ("repositories", "replay only"),
        ("tag_history", "replay only"),
    }


def test_rebuild_replaces_drifted_views_with_the_replayed_ones(container: Container) -> None:
    _fill(container)
    before = container.queries.tag_history(NAME)
    _tamper(container)
    result = rebuild(container, quiet=True)
    assert result.position == container.runner.position()
    assert verify(container, quiet=True).differences == ()
    assert container.queries.catalog() == ["acme/app", "other/repo"]
    assert container.queries.tag_history(NAME) == before


def test_commands_keep_working_after_a_rebuild(container: Container) -> None:
    _fill(container)
    collector = (gc.get_threshold(), gc.get_freeze_count())
    rebuild(container, quiet=True)
    assert (gc.get_threshold(), gc.get_freeze_count()) == collector  # restored
    push_image(container, "acme/app", "after")
    assert "after" in container.queries.tags(NAME)
    assert verify(container, quiet=True).differences == ()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cli_verify_exit_codes_and_rebuild(container: Container) -> None:
    _fill(container)
    options = ["--data-dir", str(container.settings.data_dir)]
    if container.settings.uses_postgres:
        options += ["--database", container.settings.database]
    ok = _cli("replay", "verify", *options)
    assert ok.returncode == 0, ok.stderr
    assert "views match a replay of" in ok.stdout
    assert "ev" in ok.stderr  # the progress bar
    _tamper(container)
    drift = _cli("replay", "verify", *options)
    assert drift.returncode == 1
    assert "forged/name" in drift.stdout
    assert "rows differ" in drift.stdout
    fixed = _cli("replay", "rebuild", *options)
    assert fixed.returncode == 0, fixed.stderr
    assert _cli("replay", "verify", "--quiet", *options).returncode == 0


@pytest.mark.slow
def test_rebuild_of_hundreds_of_events(container: Container) -> None:
    image = push_image(container, "acme/app", "t0")
    for i in range(300):
        container.registry.tag(NAME, Tag(f"t{i}"), image.digest, ALICE)
    result = rebuild(container, quiet=True)
    assert result.events >= 300
    assert len(container.queries.tags(NAME)) == 300


def test_a_rebuild_that_fails_leaves_the_live_views_and_no_scratch_behind(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scratch file has no journal (it is disposable): a failure mid-build or in
    the swap must still leave the live views as they were, and the file removed."""
    from cargohold.projections.projector import RegistryProjector
    from cargohold.projections.schema import VIEW_TABLES

    _fill(container)

    def snapshot() -> dict[str, list[tuple[object, ...]]]:
        return {
            t.name: sorted(
                container.views_db.query(f"SELECT {', '.join(t.column_names)} FROM {t.name}"),
                key=repr,
            )
            for t in VIEW_TABLES
        }

    before = snapshot()
    head = container.runner.position()
    apply = RegistryProjector.apply

    def failing(
        self: RegistryProjector, c: Any, ns: str, event: Any, position: int, *a: Any
    ) -> None:
        if ns and position == head - 1:
            raise RuntimeError("disk on fire")
        apply(self, c, ns, event, position, *a)

    monkeypatch.setattr(RegistryProjector, "apply", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        rebuild(container, quiet=True)
    assert snapshot() == before
    assert container.runner.position() == head
    assert not list(Path(container.settings.data_dir).glob("views-scratch-*"))
    monkeypatch.setattr(RegistryProjector, "apply", apply)
    assert verify(container, quiet=True).differences == ()
