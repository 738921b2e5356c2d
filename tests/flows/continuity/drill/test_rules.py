from __future__ import annotations

import pytest

from flows.continuity.drill.rules import Acknowledgement, RecoveryReport, figures, findings, percentile
from registry import Criticality


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([7.0], 90, 7.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0], 90, 91.0),
    ([5.0, 1.0, 3.0], 50, 3.0),  # unsorted input
    ([1.0, 2.0], 100, 2.0),
])
def test_percentiles_interpolate_between_ranks_as_spreadsheets_do(values: list[float], q: float,
                                                                  expected: float | None) -> None:
    assert percentile(values, q) == expected


def _ack(name: str, status: str = "accounted", seconds: float | None = 60.0, area: str = "Floor 1",
         location: str = "") -> Acknowledgement:
    return Acknowledgement(name=name, area=area, status=status, seconds=None if status == "missing" else seconds,
                           location=location)


def test_everyone_accounted_within_target_gives_full_headcount_a_recovery_time_and_no_findings() -> None:
    result = figures([_ack("A", seconds=30), _ack("B", seconds=90), _ack("C", seconds=240)], rto_minutes=5)
    assert (result.accounted, result.total, result.headcount_percent) == (3, 3, 100.0)
    assert (result.median_seconds, result.p90_seconds) == (90.0, 210.0)
    assert result.recovery_minutes == 4.0 and result.rto_met is True
    assert findings(result, kind_title="fire evacuation") == []


def test_the_missing_are_listed_by_area_and_leave_recovery_unachieved_against_the_target() -> None:
    acks = [_ack("Zed", "missing", area="Floor 2"), _ack("Amy", "missing", area="Floor 3"), _ack("Bo", seconds=20),
            _ack("Cy", "needs_assistance", seconds=50, location="Stairwell B")]
    result = figures(acks, rto_minutes=10)
    assert (result.accounted, result.total) == (2, 4)
    assert [a.name for a in result.missing] == ["Zed", "Amy"]
    assert result.recovery_minutes is None and result.rto_met is False
    found = {f.key: f for f in findings(result, kind_title="fire evacuation")}
    assert set(found) == {"missing", "assistance", "rto"}
    assert found["missing"].severity == Criticality.high and found["missing"].owner == "warden"
    assert "2 of 4 people were not accounted for" in found["missing"].description
    assert "Zed (Floor 2), Amy (Floor 3)" in found["missing"].description
    assert found["assistance"].description == "1 person needed assistance: Cy at Stairwell B."
    assert found["assistance"].severity == Criticality.medium
    assert found["rto"].owner == "plan_owner" and "not achieved" in found["rto"].description


def test_a_slow_but_complete_drill_misses_the_target_by_its_recovery_time() -> None:
    result = figures([_ack("A", seconds=30), _ack("B", seconds=660)], rto_minutes=10)
    assert result.recovery_minutes == 11.0 and result.rto_met is False
    [rto] = findings(result, kind_title="IT outage tabletop")
    assert rto.description == "Recovery time 11.0 minutes, against a target of 10 minutes."


def test_without_a_plan_there_is_no_target_to_meet_or_miss() -> None:
    result = figures([_ack("A", seconds=30)], rto_minutes=None)
    assert result.rto_met is None and findings(result, kind_title="drill") == []


def test_an_empty_roster_counts_as_complete_rather_than_dividing_by_zero() -> None:
    result = figures([], rto_minutes=5)
    assert (result.accounted, result.total, result.headcount_percent) == (0, 0, 100.0)
    assert result.median_seconds is None and result.recovery_minutes == 0.0


@pytest.mark.parametrize(("report", "expected_findings", "recovery", "rto_met", "rpo_met"), [
    (RecoveryReport(restored_after_minutes=90, data_loss_minutes=30, reported_by="Ivan"), set(), 90, True, True),
    (RecoveryReport(restored_after_minutes=300, data_loss_minutes=30), {"rto"}, 300, False, True),
    (RecoveryReport(restored_after_minutes=90, data_loss_minutes=75), {"rpo"}, 90, True, False),
    (RecoveryReport(restored_after_minutes=None, data_loss_minutes=0), {"rto"}, None, False, True),
    (None, {"unreported"}, None, False, None),
])
def test_a_continuity_exercise_is_measured_by_the_recovery_its_lead_reports(
        report: RecoveryReport | None, expected_findings: set[str], recovery: float | None, rto_met: bool,
        rpo_met: bool | None) -> None:
    # Everyone took part; what counts is when the service was back and how much data was lost.
    acks = [_ack("A", seconds=30), _ack("B", seconds=600)]
    result = figures(acks, rto_minutes=240, measure="recovery", report=report, rpo_minutes=60)
    assert (result.accounted, result.recovery_minutes, result.rto_met, result.rpo_met) == (2, recovery, rto_met,
                                                                                          rpo_met)
    found = {f.key: f for f in findings(result, kind_title="IT outage tabletop")}
    assert set(found) == expected_findings
    if "rpo" in found:
        assert found["rpo"].description == ("75 minutes of data or work were lost, against a recovery-point "
                                            "objective of 60 minutes.")
    if "rto" in found and recovery is None:
        assert "the service was not restored within the exercise" in found["rto"].description
    assert all(f.owner == "plan_owner" for f in found.values())
