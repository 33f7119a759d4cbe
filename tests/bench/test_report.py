"""The harness's table and page, without running anything (fast)."""

from __future__ import annotations

from pathlib import Path

from bench.report import BEGIN, END, Column, Samples, table, write_page
from bench.spec import Metric, Target

REF = Column("ref", "reference", 0)
ONE = Column("c1", "cargohold, 1 worker", 1)
TWO = Column("c2", "cargohold, 2 workers", 2)


def test_ratios_medians_spreads_and_targets_per_worker_count() -> None:
    rate = Metric("m/rate", "manifest GET", "req/s", True, Target("ratio_at_least", 1.5, 2.0))
    p99 = Metric("m/p99", "manifest GET p99", "ms", False, Target("ratio_at_most", 1.0))
    rss = Metric("rss", "RSS", "MiB", False, Target("below", 200))
    samples: Samples = {
        "m/rate": {"ref": [100.0, 110, 90], "c1": [170.0, 160, 150], "c2": [180.0, 190, 170]},
        "m/p99": {"ref": [10.0, 10], "c1": [9.0, 9], "c2": [12.0, 12]},
        "rss": {"ref": [40.0], "c1": [150.0], "c2": [250.0]},
    }
    text, misses = table([rate, p99, rss], samples, REF, [ONE, TWO])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert (
        "| 100 (90-110) | 160 (150-170) | 1.60 ✓ | 180 (170-190) | 1.80 ✗ |" in rows["manifest GET"]
    )
    assert "0.90 ✓" in rows["manifest GET p99"] and "1.20 ✗" in rows["manifest GET p99"]
    assert "3.75 ✓" in rows["RSS"] and "6.25 ✗" in rows["RSS"]  # the value counts, not the ratio
    assert [(m.metric.key, m.column.key) for m in misses] == [
        ("m/rate", "c2"),
        ("m/p99", "c2"),
        ("rss", "c2"),
    ]


def test_a_metric_without_reference_samples_has_no_row() -> None:
    metric = Metric("x", "x", "ms", False)
    text, misses = table([metric], {"x": {"c1": [1.0]}}, REF, [ONE, TWO])
    assert len(text.splitlines()) == 2 and misses == []


def test_a_rerun_replaces_only_the_generated_part(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    write_page(page, "first figures\n")
    assert "first figures" in page.read_text() and "Not yet measured" in page.read_text()
    page.write_text(page.read_text().replace(END, f"{END}\n\nhand-written analysis\n"))
    write_page(page, "second figures\n")
    text = page.read_text()
    assert "first figures" not in text
    assert text.index(BEGIN) < text.index("second figures") < text.index(END)
    assert text.index(END) < text.index("hand-written analysis")


def test_further_references_stand_beside_the_first_without_a_ratio() -> None:
    v3 = Column("v3", "reference v3", 0)
    rate = Metric("r", "rate", "req/s", True, Target("ratio_at_least", 1.0))
    samples: Samples = {"r": {"ref": [100.0], "v3": [200.0], "c1": [150.0]}}
    text, misses = table([rate], samples, [REF, v3], [ONE])
    header, _, row = text.splitlines()
    assert header.split(" | ")[2:6] == ["reference", "reference v3", "cargohold, 1 worker", "ratio"]
    assert "| 100 | 200 | 150 | 1.50 ✓ |" in row and misses == []


def test_a_cargohold_only_row_has_no_reference_and_no_ratio() -> None:
    replay = Metric("e", "replay", "events/s", True, Target("above", 50_000), cargohold_only=True)
    samples: Samples = {"e": {"c1": [40_000.0, 42_000.0]}}
    text, misses = table([replay], samples, [REF], [ONE, TWO])
    row = text.splitlines()[2]
    assert row.startswith("| replay | events/s ↑ | — | 41,000 (40,000-42,000) | — ✗ | — | — |")
    assert ">= 50,000 events/s" in row
    assert [(m.column.key, m.ratio) for m in misses] == [("c1", None)]


def test_a_target_on_the_embedded_default_only_marks_its_columns() -> None:
    pg = Column("pg", "cargohold on PostgreSQL", 2, "postgres")
    rate = Metric(
        "p", "pushes", "images/s", True, Target("ratio_at_least", 1.0, embedded_only=True)
    )
    samples: Samples = {"p": {"ref": [10.0], "c1": [12.0], "pg": [5.0]}}
    text, misses = table([rate], samples, [REF], [ONE, pg])
    assert "| 12.0 | 1.20 ✓ | 5.0 | 0.50 |" in text and misses == []
