"""The vocabulary of a benchmark run: metrics, the targets set for them, and the sizes.

``FULL`` is the published run of issue 5; ``QUICK`` the CI smoke's tiny sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MiB = 1 << 20

# -- targets ------------------------------------------------------------------------------

TargetKind = Literal["ratio_at_least", "ratio_at_most", "below", "above"]


@dataclass(frozen=True)
class Target:
    """``ratio_at_least``: cargohold / reference >= value; ``ratio_at_most``: <= value
    (latencies: "no worse"); ``below``/``above``: cargohold's own value < / >= value (in
    the unit; these need no reference).
    ``workers2`` is another threshold for ``--workers 2``."""

    kind: TargetKind
    value: float
    workers2: float | None = None
    # Judged on the embedded default (SQLite + filesystem) only; other columns get no mark.
    embedded_only: bool = False

    def threshold(self, workers: int) -> float:
        return self.workers2 if workers >= 2 and self.workers2 is not None else self.value

    def met(self, value: float, ratio: float, workers: int) -> bool:
        limit = self.threshold(workers)
        if self.kind == "ratio_at_least":
            return ratio >= limit
        if self.kind == "ratio_at_most":
            return ratio <= limit
        if self.kind == "above":
            return value >= limit
        return value < limit

    @property
    def absolute(self) -> bool:
        return self.kind in {"below", "above"}

    def describe(self, unit: str) -> str:
        def one(limit: float) -> str:
            if self.kind == "ratio_at_least":
                return f">= {limit:g}x"
            if self.kind == "ratio_at_most":
                return f"<= {limit:g}x (no worse)"
            if self.kind == "above":
                return f">= {limit:,g} {unit}"
            return f"< {limit:g} {unit}"

        if self.embedded_only:
            return f"{one(self.value)} (embedded default)"
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
    # Measured on cargohold only (no reference value, no ratio): replay rebuild.
    cargohold_only: bool = False


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
    # skopeo copy: one big layer; many small layers (count, bytes each).
    skopeo_big: int
    skopeo_layers: int
    skopeo_layer_size: int
    # Concurrent small pushes: clients, images per client.
    push_clients: int
    push_images: int
    # Read-your-writes: PUT-then-visible samples per repeat.
    ryw_samples: int
    # Replay rebuild: events in the generated log.
    replay_events: int
    # The blob pushed (streamed) while the server's RSS is sampled.
    huge_push: int


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
    skopeo_big=512 * MiB,
    skopeo_layers=50,
    skopeo_layer_size=64 * 1024,
    push_clients=16,
    push_images=10,
    ryw_samples=200,
    replay_events=1_000_000,
    huge_push=4 * 1024 * MiB,
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
    skopeo_big=4 * MiB,
    skopeo_layers=5,
    skopeo_layer_size=4096,
    push_clients=16,
    push_images=1,
    ryw_samples=10,
    replay_events=2_000,
    huge_push=8 * MiB,
)
