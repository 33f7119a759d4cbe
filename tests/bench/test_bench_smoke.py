"""The benchmark harness still runs (issue 5): ``python -m bench --quick`` on tiny sizes.

Not a benchmark: the figures of a smoke run mean nothing. What it proves is that the
harness starts every registry, loads the content, runs every measurement on each, and
writes a table with a row per metric, positive numbers for every registry and a ratio.
The reference registry and wrk are required (skipped locally when absent, a failure with
``CI=true``); a second run pins the Python load generator, wrk's fallback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measurements import ALL_METRICS
from bench.spec import QUICK
from tests.fixtures.services import find_binary
from tests.fixtures.tools import reference_registry_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = ("reference", "cargohold-1", "cargohold-2")


def _run_bench(tmp_path: Path, *args: str) -> tuple[str, dict[str, object]]:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "samples.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--json",
            str(raw),
            "--workdir",
            str(tmp_path / "work"),
            *args,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert not (tmp_path / "work").exists(), "the throwaway data was left behind"
    return out.read_text(encoding="utf-8"), json.loads(raw.read_text(encoding="utf-8"))


def _table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by first cell) of the page's results table."""
    lines = [line for line in page.splitlines() if line.startswith("| measurement |")]
    assert len(lines) == 1, page
    start = page.splitlines().index(lines[0])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in page.splitlines()[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return header, rows


def _median(cell: str) -> float:
    """``1,234 (1,100-1,300)`` -> 1234.0"""
    return float(cell.split()[0].replace(",", ""))


def test_quick_run_has_a_row_per_measurement_for_every_registry(tmp_path: Path) -> None:
    reference_registry_binary()
    find_binary("wrk")
    page, raw = _run_bench(tmp_path)
    header, rows = _table(page)
    assert header[:3] == ["measurement", "unit", "reference (distribution 2.8)"]
    ratio_columns = [i for i, name in enumerate(header) if name == "ratio"]
    assert len(ratio_columns) == 2
    assert {metric.title for metric in ALL_METRICS} == set(rows)
    for title, cells in rows.items():
        assert _median(cells[2]) > 0, title
        for i in ratio_columns:
            assert _median(cells[i - 1]) > 0, title  # cargohold's median
            assert float(cells[i].split()[0]) > 0, title  # the ratio, then ✓/✗ if a target
    samples = raw["samples"]
    assert isinstance(samples, dict)
    for metric in ALL_METRICS:
        for registry in REGISTRIES:
            values = samples[metric.key][registry]
            assert len(values) == QUICK.repeat and all(v > 0 for v in values), metric.key
    assert "| CPU |" in page and "wall time" in page and "Not yet measured" in page


def test_the_python_load_generator_measures_too(tmp_path: Path) -> None:
    reference_registry_binary()
    page, _ = _run_bench(tmp_path, "--only", "manifest-get-tag", "--loader", "python")
    _, rows = _table(page)
    throughput = rows["manifest GET by tag: throughput"]
    assert _median(throughput[2]) > 0 and _median(throughput[3]) > 0
    assert "load generator | Python" in page
