"""The report's sections computed in SQL give what its rules give over the same rows, on both databases: the
latency medians and percentiles to the last bit, the findings' ages at their bucket edges, the vendors' latest
scores, the stock counts past the shortages shown, the KPIs' figures and chart points."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.forms import form_title
from engine.periods import parse as parse_period
from flows.reporting.operations_report import rules, tasks
from registry import (
    ActionStatus,
    CorrectiveAction,
    Criticality,
    Direction,
    Finding,
    FindingStatus,
    HumanStep,
    KpiDefinition,
    KpiMeasurement,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    StepStatus,
    VendorScorecard,
    session,
)
from registry.clock import utcnow
from tests import factories

PERIOD = parse_period("2026-10", date(2026, 11, 25))


def test_latency_in_sql_is_the_rule_s_to_the_last_bit(any_db: str) -> None:
    """Group sizes odd, even and a multiple of ten (the percentile's rank), answers to the microsecond, one
    answered before it was asked (no negative hours), late and on time, some outside the month or unanswered."""
    rnd = random.Random(10)
    asked_in: list[tuple[str, str, datetime, datetime, datetime]] = []
    with session() as db:
        person = factories.person(db)
        groups = {("approval", "approval"): 20, ("form", "attestation"): 7, ("approval", "retired-form"): 4,
                  ("form", "approval"): 1}
        for (kind, form), size in groups.items():
            for n in range(size):
                asked = datetime(2026, 10, 3, 8, tzinfo=UTC) + timedelta(days=rnd.randint(0, 20),
                                                                         microseconds=rnd.randint(0, 10**11))
                took = timedelta(microseconds=rnd.randint(1, 4 * 86400 * 10**6)) if n else -timedelta(minutes=7)
                due = asked + timedelta(hours=rnd.choice((1, 24, 72)))
                db.add(HumanStep(key=f"lat-{kind}-{form}-{n}", kind=kind, form=form, title="t", subject_type="test",
                                 subject_id=1, person_id=person.id or 0, created_at=asked, due_at=due,
                                 expires_at=due, status=StepStatus.answered, answered_at=asked + took))
                asked_in.append((kind, form, asked, asked + took, due))
        september = datetime(2026, 9, 10, tzinfo=UTC)
        db.add(HumanStep(key="lat-september", kind="approval", form="approval", title="t", subject_type="test",
                         subject_id=1, person_id=person.id or 0, created_at=september, due_at=september,
                         expires_at=september, status=StepStatus.answered, answered_at=september))
        db.add(HumanStep(key="lat-pending", kind="approval", form="approval", title="t", subject_type="test",
                         subject_id=1, person_id=person.id or 0, created_at=september, due_at=september,
                         expires_at=september))

    rows = tasks.latency_section.fn(PERIOD, "UTC")

    expected = rules.latency_rows(asked_in, titles={form: form_title(form) for _, form in groups})
    assert rows == expected
    assert [(r.kind, r.form, r.answered) for r in rows] == sorted((*group, size) for group, size in groups.items())
    assert rows[0].title == form_title("approval") and rows[1].title == "retired-form"


def test_findings_are_counted_by_age_in_sql_as_the_rule_ages_them(any_db: str) -> None:
    """Things created at every bucket's edge (30 days and a second old is still 30 days old), in the future,
    actions owed, done and verified; more than the ten oldest shown; closed and verified in the month or not."""
    now = utcnow()
    ages = [timedelta(0), timedelta(days=30, hours=23, minutes=59, seconds=59), timedelta(days=31),
            timedelta(days=60, hours=23), timedelta(days=61), timedelta(days=90, seconds=86399), timedelta(days=91),
            timedelta(days=200), -timedelta(hours=2), timedelta(days=45), timedelta(days=130), timedelta(days=12)]
    severities = list(Criticality)
    statuses = [ActionStatus.open, ActionStatus.reopened, ActionStatus.done, ActionStatus.verified]
    october = datetime(2026, 10, 15, 12, tzinfo=UTC)
    found: list[rules.OpenItem] = []
    with session() as db:
        owner = factories.person(db, "Olga Owner")
        for n, age in enumerate(ages):
            finding = Finding(origin_type="test", origin_id=n, code="test", process="test-process",
                              severity=severities[n % 3], description=f"Finding {n}", created_at=now - age)
            db.add(finding)
            db.flush()
            status, due = statuses[n % 4], now + timedelta(days=(n % 3) - 1)
            acted = now - age + timedelta(hours=1)
            db.add(CorrectiveAction(finding_id=finding.id or 0, owner_id=owner.id or 0, description=f"Action {n}",
                                    due_at=due, status=status, created_at=acted,
                                    verified_at=october if status == ActionStatus.verified else None))
            found.append(rules.OpenItem("finding", f"Finding {n}", severities[n % 3].value, "Olga Owner",
                                        rules.age_days(now - age, now)))
            if status != ActionStatus.verified:
                found.append(rules.OpenItem("corrective action", f"Action {n}", severities[n % 3].value,
                                            "Olga Owner", rules.age_days(acted, now), due,
                                            status in tasks.OWED and due < now))
        for n, closed in enumerate((october, datetime(2026, 9, 30, 23, tzinfo=UTC))):
            db.add(Finding(origin_type="test-closed", origin_id=n, code="test", process="test-process",
                           severity=Criticality.low, description="Closed", status=FindingStatus.closed,
                           created_at=now - timedelta(days=300), closed_at=closed))

    section = tasks.findings_section.fn(now, PERIOD, "UTC")

    findings = [i for i in found if i.kind == "finding"]
    actions = [i for i in found if i.kind == "corrective action"]
    assert section.ages == rules.age_table([(i.age_days, i.severity) for i in findings],
                                           [(i.age_days, i.overdue) for i in actions])
    assert [a.findings for a in section.ages] == [4, 3, 2, 3], "the edges: 30 days 23:59:59 old is 30 days old"
    oldest = sorted(found, key=lambda i: (-i.age_days, i.kind))[:tasks.OLDEST_SHOWN]
    assert [(i.kind, i.age_days) for i in section.oldest] == [(i.kind, i.age_days) for i in oldest]
    assert set(section.oldest) <= set(found) and len(section.oldest) == tasks.OLDEST_SHOWN
    assert section.resolution == rules.Resolution(findings_closed=1, actions_verified=3,
                                                  awaiting_verification=3)


def test_a_vendor_s_latest_score_in_sql_is_the_rule_s(any_db: str) -> None:
    cases: dict[str, list[tuple[str, float | None]]] = {
        "never reviewed": [], "never scored": [("2026-Q1", None), ("2026-Q2", None)],
        "newest unscored": [("2025-Q4", 71.5), ("2026-Q1", 80.0), ("2026-Q2", None)],
        "newest scored": [("2026-Q2", 92.5), ("2025-Q4", None), ("2026-Q1", 60.0)]}
    expected = []
    with session() as db:
        owner = factories.person(db, "Vera Vendor-Owner")
        for cards in cases.values():
            vendor = factories.vendor(db, owner=owner, contract_end=date(2027, 3, 31))
            for period, score in cards:
                db.add(VendorScorecard(vendor_id=vendor.id or 0, period=period, deliveries=3, score=score,
                                       standing_before=vendor.standing, standing_proposed=vendor.standing))
            latest = rules.latest_score(rules.Scorecard(p, s) for p, s in cards)
            expected.append(rules.VendorLine(code=vendor.code, name=vendor.name, owner=owner.name,
                                             standing=vendor.standing.value, score=latest.score,
                                             scored_period=latest.scored_period, contract_end=vendor.contract_end,
                                             reviewed_period=latest.reviewed_period, note=latest.note))
        gone = factories.vendor(db, owner=owner)
        gone.active = False
        db.add(gone)

    lines = tasks.vendor_section.fn()

    assert lines == sorted(expected, key=lambda v: v.code)
    assert [v.note for v in lines] == [rules.ScoreNote.never, rules.ScoreNote.unscored, rules.ScoreNote.earlier,
                                       rules.ScoreNote.scored]


def test_stock_counts_in_sql_cover_every_low_item_not_only_those_shown(any_db: str) -> None:
    rnd = random.Random(11)
    with session() as db:
        owner = factories.person(db)
        vendor = factories.vendor(db, owner=owner)
        items = [factories.inventory_item(db, vendor, on_hand=rnd.randint(0, 12), reorder_point=10,
                                          unit_cost=f"{rnd.randint(1, 999)}.{rnd.randint(0, 99):02d}")
                 for _ in range(40)]
        requests = {status: PurchaseRequest(key=f"r-{status}", vendor_id=vendor.id or 0,
                                            requester_id=owner.id or 0, amount=Decimal("1"), approvers=[],
                                            status=status)
                    for status in (RequestStatus.pending_approval, RequestStatus.ordered, RequestStatus.rejected)}
        db.add_all(requests.values())
        db.flush()
        on_order: dict[int, int] = {}
        for n, item in enumerate(items[:24]):
            status = list(requests)[n % 3]
            quantity = rnd.randint(1, 12)
            db.add(PurchaseRequestLine(request_id=requests[status].id or 0, item_id=item.id or 0,
                                       quantity=quantity, unit_cost=Decimal("1")))
            if status != RequestStatus.rejected:
                on_order[item.id or 0] = on_order.get(item.id or 0, 0) + quantity

    health, shortages = tasks.inventory_section.fn()

    low = [i for i in items if i.on_hand <= i.reorder_point]
    assert len(low) > tasks.SHORTAGES_SHOWN
    assert health == rules.InventoryHealth(
        items=40, at_or_below=len(low), out_of_stock=sum(i.on_hand == 0 for i in items),
        covered=sum(i.on_hand + on_order.get(i.id or 0, 0) > i.reorder_point for i in low),
        stock_value=pytest.approx(float(sum(i.on_hand * i.unit_cost for i in items)), abs=0.005))
    first = sorted(low, key=lambda i: (i.on_hand, -i.reorder_point, i.sku, i.location))[:tasks.SHORTAGES_SHOWN]
    assert shortages == [rules.Shortage(i.sku, i.location, i.description, vendor.code, i.on_hand, i.reorder_point,
                                        on_order.get(i.id or 0, 0)) for i in first]


def test_kpis_read_as_plain_rows_give_the_rule_s_figures_and_points(any_db: str) -> None:
    rnd = random.Random(12)
    first, last = rules.chart_window(PERIOD)
    measured: dict[str, list[tuple[date, float]]] = {}
    with session() as db:
        owner = factories.person(db, "Kim KPI-Owner")
        for code, active, with_owner, days in (("A", True, True, 400), ("B", True, False, 0), ("C", False, True, 30),
                                               ("D", True, True, 45)):
            kpi = KpiDefinition(code=code, name=f"KPI {code}", unit="%", target=90, active=active,
                                direction=Direction.higher_is_better if code < "C" else Direction.lower_is_better,
                                owner_id=owner.id if with_owner else None)
            db.add(kpi)
            db.flush()
            points = [(last + timedelta(days=3) - timedelta(days=d), round(rnd.uniform(80, 100), 3))
                      for d in range(days)]
            db.add_all(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=day, value=value) for day, value in points)
            measured[code] = points
        specs = {code: rules.KpiSpec(id=0, code=code, name=f"KPI {code}", unit="%", target=90,
                                     direction="higher" if code < "C" else "lower",
                                     owner="" if code == "B" else "Kim KPI-Owner") for code in "ABD"}

    rows = tasks.kpi_section.fn(PERIOD)

    assert [r.spec.code for r in rows] == ["A", "B", "D"], "the inactive KPI is left out"
    for row in rows:
        spec = replace(specs[row.spec.code], id=row.spec.id)
        assert row == rules.summarize_kpi(spec, measured[row.spec.code], PERIOD)
        assert all(first <= day <= last for day, _ in row.points)
    assert rows[0].measurements == 31 and len(rows[0].points) == 365 and rows[1].value is None
