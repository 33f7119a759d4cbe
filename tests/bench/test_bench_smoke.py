"""The benchmark harness still runs (issue 5): ``python -m bench --quick`` on tiny sizes.

Not a benchmark: the figures of a smoke run mean nothing. What it proves is that the
harness starts every registry (the reference, cargohold on SQLite with 1 and 2 workers and
on PostgreSQL + MinIO, and distribution v3 where it was built), loads the content, runs
every measurement on each, and writes a table with a row per metric, positive numbers for
every registry and a ratio; the cargohold-only row (replay rebuild) has one value and no
ratio. The reference registry, wrk, skopeo, PostgreSQL and MinIO are required (skipped
locally when absent, a failure with ``CI=true``); distribution v3 is optional (its build
may fail). A second run pins the Python load generator, wrk's fallback; a third asks for
a server that is not there and must fail, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measurements import ALL_METRICS
from bench.servers import V3_BINARY, reference_binary
from bench.spec import QUICK
from tests.fixtures.postgres import _pg_bin_dirs
from tests.fixtures.services import find_binary
from tests.fixtures.tools import reference_registry_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CARGOHOLDS = ("cargohold-1", "cargohold-2", "cargohold-pg")
# The new rows of the write-side increment: each must be in the table.
NEW_ROWS = (
    "skopeo push, 512 MiB image (1 layer)",
    "skopeo pull, 512 MiB image (1 layer)",
    "skopeo push, 50-layer image",
    "skopeo pull, 50-layer image",
    "16 clients pushing small images",
    "read-your-writes: PUT to visible, p50",
    "read-your-writes: PUT to visible, p99",
    "replay rebuild of 1,000,000 events (SQLite)",
    "server RSS, peak during a streamed 4 GiB push",
)


def _run_bench(
    tmp_path: Path, *args: str, expect_failure: bool = False, env: dict[str, str] | None = None
) -> tuple[str, dict[str, object]]:
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
        env={**os.environ, **(env or {})},
    )
    assert not (tmp_path / "work").exists(), "the throwaway data was left behind"
    if expect_failure:
        assert done.returncode != 0 and not out.exists(), done.stdout[-2000:]
        return done.stderr, {}
    assert done.returncode == 0, done.stderr[-4000:]
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


def _services() -> None:
    reference_registry_binary()
    find_binary("wrk")
    find_binary("skopeo")
    find_binary("initdb", *_pg_bin_dirs())
    find_binary("minio", "~/go/bin")


def test_quick_run_has_a_row_per_measurement_for_every_registry(tmp_path: Path) -> None:
    _services()
    references = ["reference"] + (["reference-v3"] if reference_binary("v3") else [])
    page, raw = _run_bench(tmp_path, "--servers", *references, *CARGOHOLDS)
    header, rows = _table(page)
    assert header[:2] == ["measurement", "unit"]
    assert header[2] == "reference (distribution 2.8)"
    if len(references) == 2:
        assert header[3] == "reference (distribution v3)"
    ratio_columns = [i for i, name in enumerate(header) if name == "ratio"]
    assert len(ratio_columns) == len(CARGOHOLDS)
    assert header[ratio_columns[-1] - 1] == "cargohold on PostgreSQL + MinIO, 2 workers"
    assert {metric.title for metric in ALL_METRICS} == set(rows)
    assert set(NEW_ROWS) <= set(rows)
    only = {metric.title for metric in ALL_METRICS if metric.cargohold_only}
    assert only == {"replay rebuild of 1,000,000 events (SQLite)"}
    for title, cells in rows.items():
        assert len(cells) == len(header), title
        if title in only:
            # One value, in the first embedded cargohold column; no reference, no ratio.
            assert all(cells[2 + i] == "—" for i in range(len(references))), title
            assert _median(cells[ratio_columns[0] - 1]) > 0, title
            assert all(cells[i].startswith("—") for i in ratio_columns), title
            assert all(cells[i - 1] == "—" for i in ratio_columns[1:]), title
            continue
        for i in range(len(references)):
            assert _median(cells[2 + i]) > 0, title
        for i in ratio_columns:
            assert _median(cells[i - 1]) > 0, title  # cargohold's median
            assert float(cells[i].split()[0]) > 0, title  # the ratio, then ✓/✗ if a target
    samples = raw["samples"]
    assert isinstance(samples, dict)
    for metric in ALL_METRICS:
        registries = ["cargohold-1"] if metric.cargohold_only else [*references, *CARGOHOLDS]
        assert set(samples[metric.key]) == set(registries), metric.key
        for registry in registries:
            values = samples[metric.key][registry]
            assert len(values) == QUICK.repeat and all(v > 0 for v in values), metric.key
    assert "| CPU |" in page and "wall time" in page and "Not yet measured" in page
    assert "| PostgreSQL, MinIO |" in page


def test_the_python_load_generator_measures_too(tmp_path: Path) -> None:
    reference_registry_binary()
    page, _ = _run_bench(tmp_path, "--only", "manifest-get-tag", "--loader", "python")
    _, rows = _table(page)
    throughput = rows["manifest GET by tag: throughput"]
    assert _median(throughput[2]) > 0 and _median(throughput[3]) > 0
    assert "load generator | Python" in page


def test_a_server_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    """distribution v3 hidden (an empty Go bin dir, no registry-v3 on PATH): asking for
    it fails the run and says what is missing, rather than leaving the column out."""
    empty = tmp_path / "empty-go-bin"
    empty.mkdir()
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.path.exists(os.path.join(d, V3_BINARY))
    )
    stderr, _ = _run_bench(
        tmp_path,
        "--only",
        "rss-idle",
        "--servers",
        "reference-v3",
        "cargohold-1",
        env={"GOBIN": str(empty), "PATH": path},
        expect_failure=True,
    )
    assert "distribution v3 is not installed" in stderr
    assert "scripts/install-test-services" in stderr
