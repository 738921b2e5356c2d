"""The rules of a drill, without Prefect or a database: headcount, times to account, findings and their actions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["high", "medium", "low"]  # the registry's Criticality, by value


@dataclass(frozen=True)
class Acknowledgement:
    name: str
    area: str
    status: str  # "accounted", "needs_assistance" or "missing"
    seconds: float | None = None
    location: str = ""


@dataclass(frozen=True)
class RecoveryReport:
    """What the exercise lead reported of a continuity exercise: when the service was back, what was lost."""

    restored_after_minutes: float | None  # None: not restored within the exercise
    data_loss_minutes: float | None = None
    reported_by: str = ""
    note: str = ""


@dataclass(frozen=True)
class DrillFigures:
    accounted: int
    total: int
    median_seconds: float | None
    p90_seconds: float | None
    recovery_minutes: float | None
    rto_minutes: int | None
    missing: list[Acknowledgement] = field(default_factory=list)
    needs_assistance: list[Acknowledgement] = field(default_factory=list)
    measure: str = "headcount"  # "headcount": recovery is everyone accounted for; "recovery": as reported
    reported: bool = False
    data_loss_minutes: float | None = None
    rpo_minutes: int | None = None
    reported_by: str = ""
    recovery_note: str = ""

    @property
    def headcount_percent(self) -> float:
        return 100.0 * self.accounted / self.total if self.total else 100.0

    @property
    def rto_met(self) -> bool | None:
        """Whether everyone was accounted for within the plan's recovery-time objective; None without a plan."""
        if self.rto_minutes is None:
            return None
        return self.recovery_minutes is not None and self.recovery_minutes <= self.rto_minutes

    @property
    def rpo_met(self) -> bool | None:
        """Whether the data lost stayed within the plan's recovery-point objective; None when not measured."""
        if self.measure != "recovery" or self.rpo_minutes is None or self.data_loss_minutes is None:
            return None
        return self.data_loss_minutes <= self.rpo_minutes


@dataclass(frozen=True)
class DrillFinding:
    key: str  # the finding's code: stable per drill, so a re-run records each finding once
    severity: Severity
    description: str
    action: str
    owner: str  # "warden" or "plan_owner": who is responsible for the corrective action


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolating between ranks as spreadsheets do (PERCENTILE.INC)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def figures(acks: Sequence[Acknowledgement], rto_minutes: int | None, *, measure: str = "headcount",
            report: RecoveryReport | None = None, rpo_minutes: int | None = None) -> DrillFigures:
    """Headcount and timing once the window has closed.

    Someone who asked for assistance is accounted for (the wardens know where they are). In an evacuation
    (`headcount`) the achieved recovery time is the time until the last person was accounted for, and there is
    none while anyone is still missing. In a continuity exercise (`recovery`) it is what the exercise lead
    reported: the time until the service was restored, and the data lost against the plan's RPO; none without
    a report.
    """
    answered = [a for a in acks if a.status != "missing"]
    times = [a.seconds for a in answered if a.seconds is not None]
    missing = [a for a in acks if a.status == "missing"]
    if measure == "recovery":
        recovery = report.restored_after_minutes if report is not None else None
    else:
        recovery = (max(times) / 60.0 if times else 0.0) if not missing else None
    return DrillFigures(
        accounted=len(answered), total=len(acks), median_seconds=percentile(times, 50),
        p90_seconds=percentile(times, 90), recovery_minutes=recovery, rto_minutes=rto_minutes,
        missing=sorted(missing, key=lambda a: (a.area, a.name)),
        needs_assistance=sorted((a for a in acks if a.status == "needs_assistance"), key=lambda a: a.name),
        measure=measure, reported=report is not None, rpo_minutes=rpo_minutes,
        data_loss_minutes=report.data_loss_minutes if report is not None else None,
        reported_by=report.reported_by if report is not None else "",
        recovery_note=report.note if report is not None else "",
    )


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


def findings(result: DrillFigures, *, kind_title: str) -> list[DrillFinding]:
    """What the after-action review records; each finding becomes one corrective action."""
    found: list[DrillFinding] = []
    if result.missing:
        names = ", ".join(f"{a.name} ({a.area})" if a.area else a.name for a in result.missing)
        found.append(DrillFinding(
            key="missing", severity="high",
            description=f"{len(result.missing)} of {result.total} people were not accounted for when the "
                        f"{kind_title} closed: {names}.",
            action="Find out why each person did not acknowledge (absent, no phone, message not received) and "
                   "correct the roster or the alerting channel.",
            owner="warden"))
    if result.needs_assistance:
        names = ", ".join(f"{a.name} at {a.location}" for a in result.needs_assistance)
        found.append(DrillFinding(
            key="assistance", severity="medium",
            description=f"{_people(len(result.needs_assistance))} needed assistance: {names}.",
            action="Review the personal evacuation or support plan of each person who needed assistance.",
            owner="warden"))
    if result.measure == "recovery" and not result.reported:
        found.append(DrillFinding(
            key="unreported", severity="medium",
            description=f"Nobody reported when the service was restored in the {kind_title}: the recovery time "
                        "could not be measured.",
            action="Name an exercise lead for the plan and record the recovery times of the exercise.",
            owner="plan_owner"))
    if result.rto_met is False and (result.measure != "recovery" or result.reported):
        if result.recovery_minutes is not None:
            achieved = f"{result.recovery_minutes:.1f} minutes"
        elif result.measure == "recovery":
            achieved = "not achieved: the service was not restored within the exercise"
        else:
            achieved = "not achieved: people were still missing"
        found.append(DrillFinding(
            key="rto", severity="high",
            description=f"Recovery time {achieved}, against a target of {result.rto_minutes} minutes.",
            action="Revise the continuity plan's procedure, or its recovery-time objective, so the target is met.",
            owner="plan_owner"))
    if result.rpo_met is False:
        found.append(DrillFinding(
            key="rpo", severity="high",
            description=f"{result.data_loss_minutes:g} minutes of data or work were lost, against a recovery-point "
                        f"objective of {result.rpo_minutes} minutes.",
            action="Back up or replicate more often, or revise the plan's recovery-point objective.",
            owner="plan_owner"))
    return found
