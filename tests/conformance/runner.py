"""Run one generation of the OCI distribution-spec conformance suite and read its report.

Two generations, both built by ``scripts/install-test-services`` from the Go module proxy:

- ``"current"``: the current program (``oci-conformance``), configured by ``OCI_*``
  environment variables with ``OCI_VERSION=1.1``; writes ``results.yaml``, ``junit.xml``
  and ``report.html`` to ``OCI_RESULTS_DIR``.
- ``"ginkgo"``: the Ginkgo suite (``oci-conformance-ginkgo.test``, ``go test -c``) with
  its four workflows (pull, push, content discovery, content management); writes
  ``junit.xml`` and ``report.html`` to ``OCI_REPORT_DIR``.

``run_conformance`` turns every API and data set on, without auth, runs the binary with
a scrubbed environment (no ``OCI_*`` variable leaks in from outside) in ``workdir``, and
parses ``junit.xml`` into a ``ConformanceResult``. It raises ``ConformanceRunError`` when the
suite wrote no report (it crashed, timed out, or could not load its configuration); a
suite that ran and found failures is a result, not an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.fixtures.tools import conformance_binary

GENERATIONS = ("current", "ginkgo")
DEFAULT_TIMEOUT = 1800.0

# The current program's toggles (config.go), all on. Two are left at their OCI_VERSION=1.1
# values on purpose: OCI_API_MANIFESTS_TAG_PARAM (``?tag=`` on a manifest PUT by digest) is
# only in the post-1.1 development spec ("1.1+dev"), and OCI_DATA_* has no switch of its
# own for it. The digest-header toggles make Docker-Content-Digest required.
CURRENT_API_AND_DATA = {
    "OCI_API_PING": "true",
    "OCI_API_PULL": "true",
    "OCI_API_PUSH": "true",
    "OCI_API_BLOBS_ATOMIC": "true",
    "OCI_API_BLOBS_DELETE": "true",
    "OCI_API_BLOBS_DIGEST_HEADER": "true",
    "OCI_API_BLOBS_MOUNT_ANONYMOUS": "true",
    "OCI_API_BLOBS_UPLOAD_CANCEL": "true",
    "OCI_API_MANIFESTS_ATOMIC": "true",
    "OCI_API_MANIFESTS_DELETE": "true",
    "OCI_API_MANIFESTS_DIGEST_HEADER": "true",
    "OCI_API_MANIFESTS_TAG_PARAM": "false",
    "OCI_API_TAGS_ATOMIC": "true",
    "OCI_API_TAGS_DELETE": "true",
    "OCI_API_TAGS_LIST": "true",
    "OCI_API_REFERRER": "true",
    "OCI_DATA_IMAGE": "true",
    "OCI_DATA_INDEX": "true",
    "OCI_DATA_INDEX_LIST": "true",
    "OCI_DATA_SPARSE": "true",
    "OCI_DATA_ARTIFACT": "true",
    "OCI_DATA_SUBJECT": "true",
    "OCI_DATA_SUBJECT_MISSING": "true",
    "OCI_DATA_ARTIFACT_LIST": "true",
    "OCI_DATA_SUBJECT_LIST": "true",
    "OCI_DATA_DATA_FIELD": "true",
    "OCI_DATA_NONDISTRIBUTABLE": "true",
    "OCI_DATA_CUSTOM_FIELDS": "true",
    "OCI_DATA_NO_LAYERS": "true",
    "OCI_DATA_EMPTY_BLOB": "true",
    "OCI_DATA_SHA512": "true",
}

# junit ``status`` values of both generations (Ginkgo's and the current program's).
_PASSED = {"passed"}
_SKIPPED = {"skipped", "pending", "disabled"}
_FAILED = {"failed", "failure"}
# Everything else ("error", "panicked", "interrupted", "aborted", "timedout") is an error.


class ConformanceRunError(RuntimeError):
    """The suite produced no report to read."""


@dataclass(frozen=True)
class CaseFailure:
    name: str
    message: str


@dataclass(frozen=True)
class ConformanceResult:
    generation: str
    passed: int
    failed: int
    skipped: int
    errors: int
    failures: tuple[CaseFailure, ...]  # every failed or errored test case, in report order
    suite_counts: Mapping[str, int]  # the <testsuite> element's own tests/failures/... counts
    returncode: int
    report_dir: Path
    log_path: Path
    env: Mapping[str, str] = field(repr=False)  # the OCI_* variables it ran with

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors

    @property
    def failure_names(self) -> list[str]:
        return [f.name for f in self.failures]

    @property
    def ok(self) -> bool:
        """Everything ran passed: no failure, no error, and something passed."""
        return self.passed > 0 and self.failed == 0 and self.errors == 0

    def summary(self) -> str:
        suite = ", ".join(f"{k}={v}" for k, v in self.suite_counts.items())
        return (
            f"{self.generation}: {self.passed} passed, {self.failed} failed, "
            f"{self.skipped} skipped, {self.errors} errors of {self.total} test cases "
            f"(suite's own counts: {suite})"
        )


def run_conformance(
    generation: str,
    base_url: str,
    workdir: Path,
    namespace: str = "conformance/test",
    *,
    crossmount_namespace: str | None = None,
    automatic_crossmount: bool | None = True,
    extra_env: Mapping[str, str] | None = None,
    binary: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ConformanceResult:
    """Run ``generation`` ("current" or "ginkgo") against the registry at ``base_url``.

    ``namespace`` and ``crossmount_namespace`` (default ``<namespace>-mount``) are the two
    repositories it pushes to. ``automatic_crossmount`` is the Ginkgo suite's
    OCI_AUTOMATIC_CROSSMOUNT: True expects a mount without ``from`` to succeed (201), False
    expects 202, None skips that check. ``extra_env`` overrides any variable set here.
    The report lands in ``workdir/report``, the suite's stdout and stderr in
    ``workdir/conformance.log``.
    """
    if generation not in GENERATIONS:
        raise ValueError(f"unknown conformance generation {generation!r}; one of {GENERATIONS}")
    binary = binary or conformance_binary(generation)
    crossmount_namespace = crossmount_namespace or f"{namespace}-mount"
    workdir.mkdir(parents=True, exist_ok=True)
    report_dir = workdir / "report"
    shutil.rmtree(report_dir, ignore_errors=True)  # never read a stale report
    report_dir.mkdir()
    log_path = workdir / "conformance.log"

    if generation == "current":
        oci_env = _current_env(base_url, namespace, crossmount_namespace, report_dir)
        argv = [binary]
    else:
        oci_env = _ginkgo_env(
            base_url, namespace, crossmount_namespace, report_dir, automatic_crossmount
        )
        argv = [binary, "-ginkgo.no-color"]
    oci_env.update(extra_env or {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCI_")}
    env.update(oci_env)

    with open(log_path, "wb") as log:
        try:
            completed = subprocess.run(
                argv,
                cwd=workdir,  # the current program also reads ./oci-conformance.yaml: none here
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise ConformanceRunError(
                f"{generation} conformance timed out after {timeout:.0f}s\n{_tail(log_path)}"
            ) from e
    junit = report_dir / "junit.xml"
    if not junit.is_file():
        raise ConformanceRunError(
            f"{generation} conformance (exit status {completed.returncode}) wrote no "
            f"{junit}\n{_tail(log_path)}"
        )
    return parse_junit(
        junit,
        generation=generation,
        returncode=completed.returncode,
        log_path=log_path,
        env=oci_env,
    )


def _current_env(base_url: str, repo1: str, repo2: str, report_dir: Path) -> dict[str, str]:
    url = urlsplit(base_url)
    if url.scheme not in {"http", "https"} or not url.netloc:
        raise ValueError(f"base_url must be http(s)://host[:port], not {base_url!r}")
    return {
        "OCI_VERSION": "1.1",
        "OCI_REGISTRY": url.netloc,
        "OCI_TLS": "disabled" if url.scheme == "http" else "enabled",
        "OCI_REPO1": repo1,
        "OCI_REPO2": repo2,
        "OCI_RESULTS_DIR": str(report_dir),
        "OCI_LOG": "warn",
        **CURRENT_API_AND_DATA,
    }


def _ginkgo_env(
    base_url: str,
    namespace: str,
    crossmount_namespace: str,
    report_dir: Path,
    automatic_crossmount: bool | None,
) -> dict[str, str]:
    env = {
        "OCI_ROOT_URL": base_url.rstrip("/"),
        "OCI_NAMESPACE": namespace,
        "OCI_CROSSMOUNT_NAMESPACE": crossmount_namespace,
        "OCI_TEST_PULL": "1",
        "OCI_TEST_PUSH": "1",
        "OCI_TEST_CONTENT_DISCOVERY": "1",
        "OCI_TEST_CONTENT_MANAGEMENT": "1",
        "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
        "OCI_DELETE_MANIFEST_BEFORE_BLOBS": "1",
        "OCI_DEBUG": "0",
        "OCI_REPORT_DIR": str(report_dir),
    }
    if automatic_crossmount is not None:
        env["OCI_AUTOMATIC_CROSSMOUNT"] = "1" if automatic_crossmount else "0"
    return env


def parse_junit(
    junit: Path,
    *,
    generation: str,
    returncode: int = 0,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ConformanceResult:
    """Count the test cases of either generation's ``junit.xml``.

    Ginkgo also reports suite nodes (``[ReportAfterSuite] ...``, ``[BeforeSuite]``) as test
    cases: they count only when they did not pass. Names lose Ginkgo's ``[It] `` prefix.
    """
    root = ET.parse(junit).getroot()  # noqa: S314 - a report our own subprocess just wrote
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise ConformanceRunError(f"{junit} has no <testsuite>")
    suite_counts = {
        key: int(suite.get(key, "0"))
        for key in ("tests", "failures", "errors", "skipped", "disabled")
    }
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failures: list[CaseFailure] = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        outcome = _outcome(case)
        is_spec = generation != "ginkgo" or name.startswith("[It] ")
        if not is_spec and outcome in {"passed", "skipped"}:
            continue
        counts[outcome] += 1
        if outcome in {"failed", "errors"}:
            failures.append(CaseFailure(name.removeprefix("[It] "), _message(case)))
    return ConformanceResult(
        generation=generation,
        passed=counts["passed"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        errors=counts["errors"],
        failures=tuple(failures),
        suite_counts=suite_counts,
        returncode=returncode,
        report_dir=junit.parent,
        log_path=log_path or junit.parent / "conformance.log",
        env=dict(env or {}),
    )


def _outcome(case: ET.Element) -> str:
    status = (case.get("status") or "").lower()
    if not status:  # plain junit: the child element says it
        if case.find("failure") is not None:
            status = "failed"
        elif case.find("error") is not None:
            status = "error"
        elif case.find("skipped") is not None:
            status = "skipped"
        else:
            status = "passed"
    if status in _PASSED:
        return "passed"
    if status in _SKIPPED:
        return "skipped"
    if status in _FAILED:
        return "failed"
    return "errors"


def _message(case: ET.Element) -> str:
    # Ginkgo puts the assertion into <failure message=...>; the current program puts its
    # errors into <system-out> and the request log into <system-err>.
    for tag in ("failure", "error"):
        element = case.find(tag)
        if element is not None:
            text = element.get("message") or element.text or ""
            if text.strip():
                return text.strip()[:2000]
    out = case.findtext("system-out") or ""
    return out.strip()[:2000]


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""
