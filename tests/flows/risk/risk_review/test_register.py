"""The register's queries on both databases: what a review reads, each in a fixed number of statements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import event
from sqlmodel import Session, select

from engine.findings import Origin, raise_finding
from flows.risk.risk_review import register
from registry import (
    Audit,
    Control,
    ControlTest,
    Criticality,
    KpiDefinition,
    KpiMeasurement,
    Person,
    Risk,
    RiskAssessment,
    RiskCategory,
    RiskControl,
    RiskIndicator,
    RiskMatrix,
    get_engine,
    session,
)
from registry.kpis import Direction
from tests import factories

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
LAST_REVIEW = datetime(2026, 9, 1, 9, tzinfo=UTC)
T = TypeVar("T")


@dataclass
class Seeded:
    owner: int
    other: int
    ids: dict[str, int]


def _matrix_id(db: Session) -> int:
    return db.exec(select(RiskMatrix.id).where(RiskMatrix.is_default)).one() or 0


def _risk(db: Session, code: str, category: RiskCategory, owner: Person, scores: tuple[int, int, int, int], *,
          next_review: datetime | None, last_review: datetime | None = LAST_REVIEW, active: bool = True) -> Risk:
    il, ii, rl, ri = scores
    risk = Risk(code=code, title=f"Risk {code}", category_id=category.id or 0, owner_id=owner.id or 0,
                matrix_id=_matrix_id(db), inherent_likelihood=il, inherent_impact=ii, residual_likelihood=rl,
                residual_impact=ri, next_review_at=next_review, last_reviewed_at=last_review, active=active)
    db.add(risk)
    db.flush()
    return risk


def _assess(db: Session, risk: Risk, scores: tuple[int, int, int, int], levels: tuple[str, str], at: datetime,
            reason: str = "cadence") -> RiskAssessment:
    il, ii, rl, ri = scores
    row = RiskAssessment(risk_id=risk.id or 0, inherent_likelihood=il, inherent_impact=ii, residual_likelihood=rl,
                         residual_impact=ri, inherent_level=levels[0], residual_level=levels[1], reason=reason,
                         assessed_at=at, changed=True, rationale=f"{reason} at {at:%Y-%m-%d}")
    db.add(row)
    db.flush()
    return row


def _finding_on(db: Session, test: ControlTest, at: datetime, *, origin: str = "control_test") -> int:
    raised = raise_finding(db, origin=Origin(origin, test.id or 0), code=f"control-{at:%m%d}",
                           severity=Criticality.high, description=f"Control test {test.id} failed", actor="test",
                           process="compliance-audit", action=None)
    raised.finding.created_at = at
    db.add(raised.finding)
    db.flush()
    return raised.finding.id or 0


def _seed() -> Seeded:
    with session() as db:
        owner, other, manager = (factories.person(db, n) for n in ("Rita Risk", "Omar Other", "Clara Compliance"))
        framework = factories.framework(db, manager=manager, owners=[owner, other])
        c1, c2 = db.exec(select(Control).where(Control.framework_id == framework.id).order_by(Control.ref)).all()
        audit = Audit(framework_id=framework.id or 0, period="2026-Q3", evidence_due_at=NOW - timedelta(days=60))
        db.add(audit)
        db.flush()
        tests = [ControlTest(audit_id=audit.id or 0, control_id=c.id or 0, owner_id=owner.id or 0) for c in (c1, c2)]
        db.add_all(tests)
        db.flush()
        ops = RiskCategory(code="OPS", name="Operational", appetite="Medium")
        cyber = RiskCategory(code="CYB", name="Cyber", appetite="High")
        db.add_all([ops, cyber])
        db.flush()
        # R-1 Critical → High residual 4×4, above Medium; R-2 High residual within High; R-3 Low; R-4 retired.
        r1 = _risk(db, "R-1", ops, owner, (5, 5, 4, 4), next_review=NOW - timedelta(days=1))
        r2 = _risk(db, "R-2", cyber, other, (4, 4, 3, 4), next_review=NOW + timedelta(days=40))
        r3 = _risk(db, "R-3", ops, other, (2, 2, 1, 1), next_review=None, last_review=None)
        r4 = _risk(db, "R-4", ops, owner, (5, 5, 5, 5), next_review=NOW - timedelta(days=90), active=False)
        db.add_all([RiskControl(risk_id=r1.id or 0, control_id=c1.id or 0),
                    RiskControl(risk_id=r2.id or 0, control_id=c1.id or 0),
                    RiskControl(risk_id=r2.id or 0, control_id=c2.id or 0)])
        a1 = _assess(db, r1, (5, 5, 3, 3), ("Critical", "Medium"), datetime(2026, 3, 1, tzinfo=UTC), "import")
        a2 = _assess(db, r1, (5, 5, 3, 4), ("Critical", "High"), datetime(2026, 6, 1, tzinfo=UTC))
        a3 = _assess(db, r1, (5, 5, 4, 4), ("Critical", "High"), LAST_REVIEW)
        b1 = _assess(db, r2, (4, 4, 3, 4), ("High", "High"), datetime(2026, 5, 1, tzinfo=UTC), "import")
        otd = KpiDefinition(code="OTD", name="On-time delivery", unit="%", target=95,
                            direction=Direction.higher_is_better)
        irt = KpiDefinition(code="IRT", name="Incident response", unit="h", target=4,
                            direction=Direction.lower_is_better)
        db.add_all([otd, irt])
        db.flush()
        measured = {}
        for day, value in ((date(2026, 11, 8), 96.0), (date(2026, 11, 29), 88.5), (date(2026, 11, 22), 91.0)):
            m = KpiMeasurement(kpi_id=otd.id or 0, measured_on=day, value=value)
            db.add(m)
            db.flush()
            measured[day] = m.id or 0
        db.add_all([RiskIndicator(risk_id=r1.id or 0, kpi_id=otd.id or 0, threshold=90, breach_when="below"),
                    RiskIndicator(risk_id=r1.id or 0, kpi_id=irt.id or 0, threshold=8, breach_when="above"),
                    RiskIndicator(risk_id=r2.id or 0, kpi_id=otd.id or 0, threshold=85, breach_when="below"),
                    # Its breach was asked about already: the latest measurement is that one.
                    RiskIndicator(risk_id=r3.id or 0, kpi_id=otd.id or 0, threshold=95, breach_when="below",
                                  last_breach_measurement_id=measured[date(2026, 11, 29)]),
                    RiskIndicator(risk_id=r4.id or 0, kpi_id=otd.id or 0, threshold=99, breach_when="below")])
        old = _finding_on(db, tests[0], LAST_REVIEW - timedelta(days=10))
        new = _finding_on(db, tests[0], LAST_REVIEW + timedelta(days=20))
        on_c2 = _finding_on(db, tests[1], LAST_REVIEW + timedelta(days=30))
        _finding_on(db, tests[0], LAST_REVIEW + timedelta(days=5), origin="drill")  # same id, another origin
        return Seeded(owner.id or 0, other.id or 0, {
            "r1": r1.id or 0, "r2": r2.id or 0, "r3": r3.id or 0, "r4": r4.id or 0, "a1": a1.id or 0,
            "a2": a2.id or 0, "a3": a3.id or 0, "b1": b1.id or 0, "old": old, "new": new, "on_c2": on_c2,
            "c1": c1.id or 0, "c2": c2.id or 0, "latest_otd": measured[date(2026, 11, 29)]})


@contextmanager
def _statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _counted(call: Callable[[Session], T]) -> tuple[T, int]:
    with session() as db, _statements() as seen:
        result = call(db)
    return result, len([s for s in seen if s.lstrip().upper().startswith("SELECT")])


def test_the_register_shows_levels_from_the_matrix_and_who_is_above_appetite(any_db: str) -> None:
    seeded = _seed()
    rows, statements = _counted(lambda db: register.register(db))
    assert statements == 3, "matrices (2) and the register (1), however many risks"
    assert [r.code for r in rows] == ["R-1", "R-2", "R-3"], "highest residual first; the retired R-4 left out"
    r1, r2, r3 = rows
    assert (r1.inherent.name, r1.residual.name, r1.appetite, r1.above_appetite) == ("Critical", "High", "Medium",
                                                                                    True)
    assert (r2.residual.name, r2.appetite, r2.above_appetite) == ("High", "High", False)
    assert (r3.residual.name, r3.above_appetite, r3.assessment_id) == ("Low", False, None)
    assert (r1.assessment_id, r2.assessment_id) == (seeded.ids["a3"], seeded.ids["b1"])
    assert (r1.owner, r1.category, r1.residual.colour, r1.residual_scored.score) == ("Rita Risk", "Operational",
                                                                                     "#ef6c00", 16)
    everything = _counted(lambda db: register.register(db, include_inactive=True))[0]
    assert [r.code for r in everything] == ["R-4", "R-1", "R-2", "R-3"]


def test_a_review_asks_about_risks_due_by_their_next_review_or_the_one_or_the_category_asked(any_db: str) -> None:
    _seed()
    with session() as db:
        assert [r.code for r in register.to_review(db, NOW)] == ["R-1", "R-3"], "overdue and never scheduled"
        assert [r.code for r in register.to_review(db, NOW + timedelta(days=45))] == ["R-1", "R-2", "R-3"]
        assert [r.code for r in register.to_review(db, NOW, risk_code="R-2")] == ["R-2"], "asked for: due or not"
        assert [r.code for r in register.to_review(db, NOW, category="OPS")] == ["R-1", "R-3"]
        assert register.to_review(db, NOW, risk_code="R-4") == [], "a retired risk is not reviewed"
        assert register.to_review(db, NOW, risk_code="NOPE") == []


def test_each_indicator_reads_its_kpis_latest_measurement_in_one_query(any_db: str) -> None:
    seeded = _seed()
    kris, statements = _counted(lambda db: register.latest_kri_values(db, [seeded.ids["r1"], seeded.ids["r2"]]))
    assert statements == 1
    assert set(kris) == {seeded.ids["r1"], seeded.ids["r2"]}
    by_code = {k.kpi_code: k for k in kris[seeded.ids["r1"]]}
    otd, irt = by_code["OTD"], by_code["IRT"]
    # The latest by the day measured, not by when it was recorded (22 Nov was recorded after 29 Nov).
    assert (otd.measured_on, otd.value, otd.measurement_id) == (date(2026, 11, 29), 88.5, seeded.ids["latest_otd"])
    assert (otd.breached, otd.newly_breached, otd.unit) == (True, True, "%")
    assert (irt.measurement_id, irt.value, irt.breached) == (None, None, False), "no measurement yet"
    (r2_otd,) = kris[seeded.ids["r2"]]
    assert (r2_otd.value, r2_otd.breached) == (88.5, False), "85 is its threshold"


def test_a_breach_already_asked_about_is_not_a_new_one_and_retired_risks_have_none(any_db: str) -> None:
    seeded = _seed()
    with session() as db:
        breaches = register.kri_breaches(db)
        assert [(b.risk_id, b.kpi_code) for b in breaches] == [(seeded.ids["r1"], "OTD")]
        db.add(KpiMeasurement(kpi_id=breaches[0].kpi_id, measured_on=date(2026, 12, 6), value=80.0))
        indicator = db.get(RiskIndicator, breaches[0].indicator_id)
        assert indicator is not None
        indicator.last_breach_measurement_id = breaches[0].measurement_id
        db.add(indicator)
    with session() as db:
        again = register.kri_breaches(db)
        # A newer breaching measurement breaches R-1 again, R-2 (below its 85) and R-3 since its last one.
        assert sorted((b.risk_id, b.value) for b in again) == [(seeded.ids[r], 80.0) for r in ("r1", "r2", "r3")]


def test_findings_on_a_risks_controls_are_those_raised_since_its_last_review(any_db: str) -> None:
    seeded = _seed()
    ids = seeded.ids
    found, statements = _counted(lambda db: register.findings_on_controls(db, [ids["r1"], ids["r2"], ids["r3"]]))
    assert statements == 1
    assert [f.finding_id for f in found[ids["r1"]]] == [ids["new"]], "the one before its last review, and the " \
                                                                     "drill's with the same origin id, left out"
    assert [(f.finding_id, f.control_id) for f in found[ids["r2"]]] == [(ids["on_c2"], ids["c2"]),
                                                                        (ids["new"], ids["c1"])]
    assert ids["r3"] not in found, "no controls linked"
    with session() as db:
        since = register.findings_on_controls(db, [ids["r1"]], since=LAST_REVIEW - timedelta(days=30))
        assert [f.finding_id for f in since[ids["r1"]]] == [ids["new"], ids["old"]]
        assert since[ids["r1"]][0].control_ref == "C-1" and since[ids["r1"]][0].severity == Criticality.high


def test_each_risk_has_its_latest_assessment_and_the_one_before_and_the_one_standing_at_a_moment(any_db: str) -> None:
    seeded = _seed()
    ids = seeded.ids
    history, statements = _counted(lambda db: register.latest_assessments(db))
    assert statements == 1
    assert (history[ids["r1"]].current.id, history[ids["r1"]].previous.id) == (ids["a3"], ids["a2"])  # type: ignore[union-attr]
    assert (history[ids["r2"]].current.id, history[ids["r2"]].previous) == (ids["b1"], None)
    assert ids["r3"] not in history
    assert history[ids["r1"]].current.scores.as_tuple() == (5, 5, 4, 4)
    with session() as db:
        july = register.assessments_as_of(db, datetime(2026, 7, 1, tzinfo=UTC))
        assert {k: v.id for k, v in july.items()} == {ids["r1"]: ids["a2"], ids["r2"]: ids["b1"]}
        march = register.assessments_as_of(db, datetime(2026, 4, 1, tzinfo=UTC), [ids["r1"], ids["r2"]])
        assert {k: (v.id, v.residual_level) for k, v in march.items()} == {ids["r1"]: (ids["a1"], "Medium")}
