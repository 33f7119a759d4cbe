"""The command line's one progress bar (``cargohold/progress.py``)."""

from __future__ import annotations

import pytest

from cargohold.progress import follow_positions, progress_bar


def test_quiet_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(10, "replay", quiet=True) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_following_positions_moves_the_bar_to_each_and_never_back() -> None:
    with progress_bar(100, "replay") as bar:
        advance = follow_positions(bar)
        for position in (10, 40, 40, 25, 90):
            advance(position)
        assert bar.n == 90


def test_bytes_count_in_binary_units_and_events_in_decimal() -> None:
    with progress_bar(3 * 1024 * 1024, "blobs", "B") as blobs:
        blobs.update(3 * 1024 * 1024)
        assert "3.00M/3.00M" in str(blobs)  # 1024-based (1000-based: 3.15M)
    with progress_bar(3000, "events") as events:
        events.update(3000)
        assert "3.00k/3.00k" in str(events)
