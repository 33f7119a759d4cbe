"""The one progress bar of the command line (``replay``, ``export``, ``import``,
``audit verify``): tqdm on standard error, so standard output stays the command's result,
and silent with ``--quiet``. tqdm is the library for it; this only fixes how it looks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, description: str, unit: str = "ev", quiet: bool = False) -> Any:
    """A bar to ``update(n)`` by amounts; bytes (``unit="B"``) are counted in KiB, MiB..."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=True,
        unit_divisor=1024 if unit == "B" else 1000,
        file=sys.stderr,
        disable=quiet,
        mininterval=0.5,
    )


def follow_positions(bar: Any) -> Callable[[int], None]:
    """A callback moving ``bar`` to each log position it is given (a position never goes
    back; a smaller one moves nothing)."""
    last = 0

    def advance(position: int) -> None:
        nonlocal last
        bar.update(max(0, position - last))
        last = max(last, position)

    return advance
