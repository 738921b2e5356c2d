from __future__ import annotations

import pytest

from flows.compliance.audit.rules import finding_severity, finding_text, summarize
from registry.compliance import Criticality, TestResult


@pytest.mark.parametrize(
    ("result", "criticality", "severity"),
    [
        (TestResult.passed, Criticality.high, None),
        (TestResult.failed, Criticality.low, Criticality.low),
        (TestResult.failed, Criticality.high, Criticality.high),
        (TestResult.unanswered, Criticality.low, Criticality.medium),
        (TestResult.unanswered, Criticality.medium, Criticality.high),
        (TestResult.unanswered, Criticality.high, Criticality.high),
    ],
)
def test_finding_severity(result: TestResult, criticality: Criticality, severity: Criticality | None) -> None:
    assert finding_severity(result, criticality) == severity


def test_finding_text_quotes_the_owner_note() -> None:
    assert "two leavers" in finding_text(TestResult.failed, "AC-2", "two leavers")
    assert "No evidence" in finding_text(TestResult.unanswered, "AC-2", "")


def test_summary_counts_pending_as_unanswered() -> None:
    summary = summarize([TestResult.passed, TestResult.failed, TestResult.unanswered, None])
    assert (summary.total, summary.passed, summary.failed, summary.unanswered, summary.findings) == (4, 1, 1, 2, 3)
    assert summary.pass_rate == 0.25
    assert summarize([]).pass_rate == 1.0
