"""The vocabulary of a benchmark run: metrics, the targets set for them, and the sizes.

``FULL`` is the published run of issue 5; ``QUICK`` the CI smoke's tiny sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MiB = 1 << 20

# -- targets ------------------------------------------------------------------------------

TargetKind = Literal["ratio_at_least", "ratio_at_most", "below"]


@dataclass(frozen=True)
class Target:
    """``ratio_at_least``: cargohold / reference >= value; ``ratio_at_most``: <= value
    (latencies: "no worse"); ``below``: cargohold's own value < value (in the unit).
    ``workers2`` is another threshold for ``--workers 2``."""

    kind: TargetKind
    value: float
    workers2: float | None = None

    def threshold(self, workers: int) -> float:
        return self.workers2 if workers >= 2 and self.workers2 is not None else self.value

    def met(self, value: float, ratio: float, workers: int) -> bool:
        limit = self.threshold(workers)
        if self.kind == "ratio_at_least":
            return ratio >= limit
        if self.kind == "ratio_at_most":
            return ratio <= limit
        return value < limit

    def describe(self, unit: str) -> str:
        def one(limit: float) -> str:
            if self.kind == "ratio_at_least":
                return f">= {limit:g}x"
            if self.kind == "ratio_at_most":
                return f"<= {limit:g}x (no worse)"
            return f"< {limit:g} {unit}"

        if self.workers2 is None:
            return one(self.value)
        return f"{one(self.value)} (1 worker), {one(self.workers2)} (2 workers)"


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    target: Target | None = None


@dataclass(frozen=True)
class Profile:
    """Sizes and durations: ``FULL`` for the published figures, ``QUICK`` for the smoke."""

    name: str
    repeat: int
    duration: float
    warmup: float
    connections: int
    tags: int
    repositories: int
    catalog_page: int
    catalog_walks: int
    big_blob: int
    upload: int
    idle_settle: float


FULL = Profile(
    name="full",
    repeat=5,
    duration=10,
    warmup=2,
    connections=16,
    tags=10_000,
    repositories=10_000,
    catalog_page=1000,
    catalog_walks=3,
    big_blob=512 * MiB,
    upload=256 * MiB,
    idle_settle=2.0,
)
QUICK = Profile(
    name="quick",
    repeat=2,
    duration=1,
    warmup=0,
    connections=16,
    tags=50,
    repositories=50,
    catalog_page=10,
    catalog_walks=2,
    big_blob=4 * MiB,
    upload=4 * MiB,
    idle_settle=0.2,
)
