"""The compliance audit's rules: plain functions, no Prefect, no database."""

from __future__ import annotations

from dataclasses import dataclass

from registry.compliance import Criticality, TestResult

_ORDER = [Criticality.low, Criticality.medium, Criticality.high]

ACTION_WORKING_DAYS = {Criticality.high: 10, Criticality.medium: 20, Criticality.low: 40}


def finding_severity(result: TestResult, criticality: Criticality) -> Criticality | None:
    """A failed control is as severe as the control is critical; a control nobody vouched for, one step worse."""
    if result == TestResult.passed:
        return None
    if result == TestResult.failed:
        return criticality
    return _ORDER[min(_ORDER.index(criticality) + 1, len(_ORDER) - 1)]


def finding_text(result: TestResult, ref: str, note: str) -> str:
    if result == TestResult.failed:
        return f"Control {ref} was attested as not operating" + (f": {note}" if note else ".")
    return f"No evidence was provided for control {ref} by the deadline."


def action_text(result: TestResult, ref: str) -> str:
    if result == TestResult.failed:
        return f"Restore control {ref} to operation and provide evidence that it works."
    return f"Provide evidence for control {ref}, or record why it could not be tested."


@dataclass(frozen=True)
class AuditSummary:
    total: int
    passed: int
    failed: int
    unanswered: int
    findings: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 1.0


def summarize(results: list[TestResult | None]) -> AuditSummary:
    passed = sum(r == TestResult.passed for r in results)
    failed = sum(r == TestResult.failed for r in results)
    unanswered = len(results) - passed - failed
    return AuditSummary(total=len(results), passed=passed, failed=failed, unanswered=unanswered,
                        findings=failed + unanswered)
