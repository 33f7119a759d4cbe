"""``python -m bench.mirroring`` still runs, on tiny sizes (not a benchmark: the figures
of a smoke run mean nothing). It proves that the harness starts the reference registry as
the upstream, syncs with ``skopeo sync`` and with ``cargohold mirror run-once``, serves a
primed pull-through cache beside the mirrored repositories, and writes a table with a
positive figure and a ratio in every row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.tools import reference_registry_binary, skopeo_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_mirroring_benchmark_runs_and_reports_every_row(tmp_path: Path) -> None:
    reference_registry_binary()
    skopeo_binary()  # both skip locally when absent, fail with CI=true
    out = tmp_path / "mirroring.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.mirroring",
            "--tags",
            "3",
            "--big-mib",
            "2",
            "--repeat",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 5, text  # the header and four measurements
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0, row
        if "RSS" not in row:
            assert re.fullmatch(r"\d+\.\d\d\N{MULTIPLICATION SIGN}", cells[3]), row
