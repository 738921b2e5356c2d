"""The compliance audit's rules: plain functions, no Prefect, no database.

Results and severities travel as the registry's enum values (TestResult, Criticality are StrEnums of these).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Severity = Literal["low", "medium", "high"]
Result = Literal["pass", "fail", "unanswered"]

_ORDER: tuple[Severity, ...] = ("low", "medium", "high")


def finding_severity(result: str, criticality: str) -> Severity | None:
    """A failed control is as severe as the control is critical; a control nobody vouched for, one step worse."""
    level = _ORDER.index(criticality)  # type: ignore[arg-type]
    if result == "pass":
        return None
    if result == "fail":
        return _ORDER[level]
    return _ORDER[min(level + 1, len(_ORDER) - 1)]


def finding_text(result: str, ref: str, note: str) -> str:
    if result == "fail":
        return f"Control {ref} was attested as not operating" + (f": {note}" if note else ".")
    return f"No evidence was provided for control {ref} by the deadline."


def action_text(result: str, ref: str) -> str:
    if result == "fail":
        return f"Restore control {ref} to operation and provide evidence that it works."
    return f"Provide evidence for control {ref}, or record why it could not be tested."


def evidence_deadline(now: datetime, *, minutes: int | None, working_days_later: datetime) -> datetime:
    """When owners must have attested: a trial window in minutes if one is given, else the working-days one."""
    return now + timedelta(minutes=minutes) if minutes else working_days_later


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

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "passed": self.passed, "failed": self.failed, "unanswered": self.unanswered,
                "findings": self.findings}


def summarize(results: list[str | None]) -> AuditSummary:
    passed = sum(r == "pass" for r in results)
    failed = sum(r == "fail" for r in results)
    unanswered = len(results) - passed - failed
    return AuditSummary(total=len(results), passed=passed, failed=failed, unanswered=unanswered,
                        findings=failed + unanswered)
