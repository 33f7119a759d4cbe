"""Both generations of the conformance suite against the reference registry.

This proves the toolchain before cargohold's /v2 exists: the suites build, run against a
live registry and their reports parse. The reference registry (Debian's distribution 2.8)
does not pass everything of v1.1 (no referrers API, no sha512, ...), so these tests assert
only that the suite ran, that the parser found passes and the known failures, and print
the counts (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.runner import GENERATIONS, parse_junit, run_conformance


@pytest.mark.conformance
@pytest.mark.parametrize("generation", GENERATIONS)
def test_suite_runs_against_reference_registry(
    generation: str, reference_registry: str, tmp_path: Path
) -> None:
    result = run_conformance(
        generation,
        reference_registry,
        tmp_path,
        namespace=f"conformance/{generation}",
        # distribution 2.8 answers a mount without ``from`` with a new upload (202)
        automatic_crossmount=False,
        timeout=600,
    )
    print(f"\nreference registry, {result.summary()}")
    for failure in result.failures:
        print(f"  FAILED {failure.name}")

    assert result.passed > 0, result.summary()
    assert result.suite_counts["tests"] > 0
    assert result.total >= result.passed
    # Its known gap shows up as failures, and the exit status agrees with them.
    assert result.failed > 0, result.summary()
    assert any(
        "referrers" in name.lower() or "references" in name.lower() for name in result.failure_names
    ), result.failure_names
    assert result.returncode != 0
    assert not result.ok
    # The basics every registry has must be among the passes, not the failures.
    assert not any("ping" in name.lower() for name in result.failure_names)
    assert (result.report_dir / "report.html").is_file()


_GINKGO_JUNIT = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="1">
  <testsuite name="conformance tests" tests="5" skipped="1" errors="0" failures="1">
    <testcase name="[It] Pull Setup Populate registry" status="passed"></testcase>
    <testcase name="[It] Push Chunked Out-of-order should return 416" status="failed">
      <failure message="Expected 202 to equal 416" type="failed">details</failure>
    </testcase>
    <testcase name="[It] Push Mount automatic" status="skipped">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] Discovery panics" status="panicked"></testcase>
    <testcase name="[ReportAfterSuite] html custom reporter" status="passed"></testcase>
  </testsuite>
</testsuites>
"""

_CURRENT_JUNIT = """\
<testsuites time="1.0" tests="6" failures="2" skipped="1">
  <testsuite name="OCI Conformance Test" tests="6" failures="2" errors="0" skipped="1">
    <testcase name="OCI Conformance Test/ping" status="passed"></testcase>
    <testcase name="OCI Conformance Test/empty/referrers" status="failure">
      <system-out>unexpected status code, expected one of [200], received 404</system-out>
      <system-err>request log</system-err>
    </testcase>
    <testcase name="OCI Conformance Test/sha256 blobs/post only" status="skipped"></testcase>
    <testcase name="OCI Conformance Test/sha256 blobs/get" status="error"></testcase>
  </testsuite>
</testsuites>
"""


def test_parse_ginkgo_report(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(_GINKGO_JUNIT, encoding="utf-8")
    result = parse_junit(junit, generation="ginkgo", returncode=1)
    assert (result.passed, result.failed, result.skipped, result.errors) == (1, 1, 1, 1)
    assert result.failure_names == [
        "Push Chunked Out-of-order should return 416",
        "Discovery panics",
    ]
    assert result.failures[0].message == "Expected 202 to equal 416"
    assert result.suite_counts["tests"] == 5
    assert not result.ok


def test_parse_current_report(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(_CURRENT_JUNIT, encoding="utf-8")
    result = parse_junit(junit, generation="current", returncode=1)
    assert (result.passed, result.failed, result.skipped, result.errors) == (1, 1, 1, 1)
    assert result.failure_names == [
        "OCI Conformance Test/empty/referrers",
        "OCI Conformance Test/sha256 blobs/get",
    ]
    assert "received 404" in result.failures[0].message
    assert result.suite_counts == {
        "tests": 6,
        "failures": 2,
        "errors": 0,
        "skipped": 1,
        "disabled": 0,
    }
