"""The GA4GH's own suites against the running refget service, over sequences the pipeline stored.

The suites send no key, so they run against a second refget process of the stack with public
reading on (``GENOBASE_REFGET_PUBLIC=true``, what a server of shared reference sequences sets);
the stack's own refget is private (tests/security/test_refget_private.py).

* refget sequences: the ``refget-compliance`` suite (PyPI), its three test sequences uploaded
  through the pipeline first (the suite loads nothing itself); its JSON report is read, since the
  suite always exits 0.
* sequence collections: the compliance runner of the ``refget`` package (the reference seqcol
  implementation), after the six test FASTAs of ../shared/fixtures/seqcol are uploaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import compliance_suite
import httpx
import pytest
from refget.compliance import run_compliance
from refget.utils import fasta_to_seqcol_dict, seqcol_digest

from tests.conftest import Pipeline
from tests.helpers import upload_via_intake

pytestmark = pytest.mark.e2e
SUITE_SEQUENCES = Path(compliance_suite.__file__).parent / "sequences"
SEQCOL_FASTAS = sorted((Path(__file__).parents[1] / "fixtures" / "seqcol").glob("*.fa"))

# Tests the refget suite skips here, each for a reason the v2.0 specification gives:
DOCUMENTED_SKIPS = {
    # trunc512 identifiers were removed in refget v2.0 (ga4gh SQ. digests replace them)
    "test_sequence_query_by_trunc512",
    "test_metadata_query_by_trunc512",
    "test_metadata_trunc512",
    # this server supports circular sequences, so the "not supported" error cases do not apply
    "test_sequence_circular_support_false_errors",
}


def _load(pipeline: Pipeline, path: Path, **extra: Any) -> dict[str, Any]:
    ticket = upload_via_intake(pipeline, path.name, path.read_bytes(), **extra)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", (status, pipeline.logs())
    return status


@pytest.fixture(scope="module")
def suite_sequences(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """I and VI of yeast, and phiX174's genome, declared circular at registration."""
    return {name: _load(pipeline, SUITE_SEQUENCES / f"{name}.faa", circular=name == "NC") for name in ("I", "VI", "NC")}


def test_the_refget_compliance_suite_passes(
    public_refget_url: str, suite_sequences: dict[str, Any], tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    cli = Path(sys.executable).parent / "refget-compliance"
    run = subprocess.run(
        [str(cli), "report", "-s", f"{public_refget_url}/", "--json", str(report_path), "--no-web"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report_path.exists(), run.stderr[-2000:]
    (report,) = json.loads(report_path.read_text())
    outcomes = {test["name"]: test["result"] for test in report["test_results"]}
    failed = {name: test["text"] for test in report["test_results"] if (name := test["name"]) and test["result"] == -1}
    skipped = {name for name, result in outcomes.items() if result == 0}
    assert failed == {}
    assert skipped <= DOCUMENTED_SKIPS, skipped - DOCUMENTED_SKIPS
    assert report["total_tests_passed"] >= 25 and len(outcomes) == report["total_tests"]
    print(f"\nrefget compliance: {report['total_tests_passed']} passed, {len(skipped)} documented skips")


@pytest.fixture(scope="module")
def seqcol_uploads(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    return {path.name: _load(pipeline, path) for path in SEQCOL_FASTAS}


def test_collection_digests_match_the_reference_implementation(seqcol_uploads: dict[str, dict[str, Any]]) -> None:
    assert len(SEQCOL_FASTAS) == 6, SEQCOL_FASTAS  # the six test FASTAs, not an empty glob
    for path in SEQCOL_FASTAS:
        expected = seqcol_digest(fasta_to_seqcol_dict(str(path)))
        assert seqcol_uploads[path.name]["collection_digest"] == expected, path.name


def test_the_collection_digest_is_in_the_result_document(seqcol_uploads: dict[str, dict[str, Any]]) -> None:
    status = seqcol_uploads["base.fa"]
    document = httpx.get(status["result"]["url"], timeout=30).raise_for_status().json()
    assert document["collection_digest"] == status["collection_digest"]


def test_the_seqcol_compliance_runner_passes(public_refget_url: str, seqcol_uploads: dict[str, Any]) -> None:
    report = run_compliance(public_refget_url)
    failed = {r["name"]: r["error"] for r in report["results"] if not r["passed"]}
    assert failed == {}
    assert report["passed"] == report["total"] >= 40
    print(f"\nseqcol compliance: {report['passed']}/{report['total']} checks passed")
