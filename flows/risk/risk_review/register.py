"""The risk register as the review reads it: set-based queries, one statement each, the same on SQLite and
PostgreSQL. Levels are worked out from the matrices as data (rules.level_of), never stored twice on a risk.

- `matrices` — every matrix with its levels, as rules.Matrix.
- `register` / `to_review` — the register rows (scores, levels, appetite, last assessment), all or those due by
  their next review (or one risk, or one category).
- `latest_kri_values` / `kri_breaches` — each indicator's KPI's latest measurement against its threshold.
- `findings_on_controls` — findings raised on a risk's linked controls (origin control_test → its control) since
  a moment or since each risk's last review.
- `latest_assessments` / `assessments_as_of` — each risk's last two assessments; the one standing at a moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Subquery, and_, func, or_, select
from sqlmodel import Session, col

from flows.risk.risk_review import rules
from registry import (
    Control,
    ControlTest,
    Criticality,
    Finding,
    FindingStatus,
    KpiDefinition,
    KpiMeasurement,
    Person,
    Risk,
    RiskAssessment,
    RiskCategory,
    RiskControl,
    RiskIndicator,
    RiskLevel,
    RiskMatrix,
    Treatment,
)
from registry.clock import as_utc

CONTROL_TEST = "control_test"  # the findings' origin a failed or unanswered control test raises (the audit's)


def matrices(db: Session) -> dict[int, rules.Matrix]:
    """Every matrix by id, its levels lowest rank first: two queries, however many matrices."""
    levels: dict[int, list[rules.Level]] = {}
    for level in db.execute(select(RiskLevel).order_by(col(RiskLevel.matrix_id), col(RiskLevel.rank))).scalars():
        levels.setdefault(level.matrix_id, []).append(
            rules.Level(level.name, level.rank, level.colour, level.review_cadence))
    return {m.id or 0: rules.Matrix(m.code, tuple(m.likelihoods), tuple(m.impacts),
                                    tuple(tuple(row) for row in m.cells), tuple(levels.get(m.id or 0, ())))
            for m in db.execute(select(RiskMatrix)).scalars()}


@dataclass(frozen=True)
class RegisterRow:
    """One risk as the register shows it, with its levels on its own matrix and its category's appetite."""

    risk_id: int
    code: str
    title: str
    cause: str
    event: str
    consequence: str
    category_id: int
    category_code: str
    category: str
    appetite: str
    owner_id: int
    owner: str
    owner_email: str
    matrix_id: int
    scores: rules.Scores
    inherent: rules.Level
    residual: rules.Level
    above_appetite: bool
    treatment: Treatment
    treatment_plan: str
    last_reviewed_at: datetime | None
    next_review_at: datetime | None
    assessment_id: int | None
    """The risk's latest assessment: what an acceptance must have been given for to hold."""

    @property
    def inherent_scored(self) -> rules.Scored:
        return rules.Scored(self.scores.inherent_likelihood, self.scores.inherent_impact, self.inherent)

    @property
    def residual_scored(self) -> rules.Scored:
        return rules.Scored(self.scores.residual_likelihood, self.scores.residual_impact, self.residual)


def _latest_assessment_ids() -> Subquery:
    return (select(col(RiskAssessment.risk_id), func.max(RiskAssessment.id).label("assessment_id"))
            .group_by(col(RiskAssessment.risk_id)).subquery("latest"))


def register(db: Session, *, risk_ids: Iterable[int] | None = None, include_inactive: bool = False,
             due_by: datetime | None = None, risk_code: str = "", category: str = "") -> list[RegisterRow]:
    """The register, ordered by residual level (highest first), then score, then code: one query.

    Filters combine: `risk_ids`, one `risk_code`, one `category` code, and `due_by` (next review at or before it,
    or never scheduled). Inactive risks only with `include_inactive`.
    """
    latest = _latest_assessment_ids()
    query = (select(Risk, col(RiskCategory.code), col(RiskCategory.name), col(RiskCategory.appetite),
                    col(Person.name), col(Person.email), latest.c.assessment_id)
             .join(RiskCategory, col(RiskCategory.id) == Risk.category_id)
             .join(Person, col(Person.id) == Risk.owner_id)
             .outerjoin(latest, latest.c.risk_id == Risk.id))
    if not include_inactive:
        query = query.where(col(Risk.active).is_(True))
    if risk_ids is not None:
        query = query.where(col(Risk.id).in_(list(risk_ids)))
    if risk_code:
        query = query.where(col(Risk.code) == risk_code)
    if category:
        query = query.where(col(RiskCategory.code) == category)
    if due_by is not None:
        query = query.where(or_(col(Risk.next_review_at).is_(None), col(Risk.next_review_at) <= as_utc(due_by)))
    grids = matrices(db)
    rows = []
    for risk, category_code, category_name, appetite, owner, email, assessment_id in db.execute(query):
        matrix = grids[risk.matrix_id]
        scores = rules.Scores(risk.inherent_likelihood, risk.inherent_impact, risk.residual_likelihood,
                              risk.residual_impact)
        inherent, residual = rules.levels_of(matrix, scores)
        above = residual.rank > matrix.level(appetite).rank if any(
            lv.name == appetite for lv in matrix.levels) else True
        rows.append(RegisterRow(
            risk.id or 0, risk.code, risk.title, risk.cause, risk.event, risk.consequence, risk.category_id,
            category_code, category_name, appetite, risk.owner_id, owner, email, risk.matrix_id, scores, inherent,
            residual, above, risk.treatment, risk.treatment_plan, risk.last_reviewed_at, risk.next_review_at,
            assessment_id))
    rows.sort(key=lambda r: (-r.residual.rank, -rules.score(r.scores.residual_likelihood, r.scores.residual_impact),
                             r.code))
    return rows


def to_review(db: Session, due_by: datetime, *, risk_code: str = "", category: str = "") -> list[RegisterRow]:
    """The risks a review asks about: one risk or one category when asked for (due or not), else every active
    risk whose next review falls at or before `due_by` (or was never scheduled)."""
    if risk_code or category:
        return register(db, risk_code=risk_code, category=category)
    return register(db, due_by=due_by)


@dataclass(frozen=True)
class KriValue:
    """An indicator of a risk with its KPI's latest measurement (none yet: measurement_id None)."""

    indicator_id: int
    risk_id: int
    kpi_id: int
    kpi_code: str
    kpi_name: str
    unit: str
    threshold: float
    breach_when: str
    measurement_id: int | None
    measured_on: date | None
    value: float | None
    last_breach_measurement_id: int | None
    last_breach_on: date | None

    @property
    def breached(self) -> bool:
        return self.value is not None and rules.kri_breached(self.value, self.threshold, self.breach_when)

    @property
    def newly_breached(self) -> bool:
        """Breached by a measurement no re-score was asked for yet: newer than the last breach's."""
        if not self.breached or self.measurement_id == self.last_breach_measurement_id:
            return False
        return self.last_breach_on is None or (self.measured_on is not None and self.measured_on > self.last_breach_on)


def latest_kri_values(db: Session, risk_ids: Iterable[int] | None = None) -> dict[int, list[KriValue]]:
    """Each risk's indicators (by KPI code) with their KPI's latest measurement: one query, the latest day per KPI
    found by a grouped subquery (kpi_measurement is unique by KPI and day)."""
    newest = (select(col(KpiMeasurement.kpi_id), func.max(KpiMeasurement.measured_on).label("measured_on"))
              .group_by(col(KpiMeasurement.kpi_id)).subquery("newest"))
    latest = KpiMeasurement.__table__.alias("latest")  # type: ignore[attr-defined]
    breach = KpiMeasurement.__table__.alias("breach")  # type: ignore[attr-defined]
    query = (select(RiskIndicator, col(KpiDefinition.code), col(KpiDefinition.name), col(KpiDefinition.unit),
                    latest.c.id, latest.c.measured_on, latest.c.value, breach.c.measured_on)
             .join(KpiDefinition, col(KpiDefinition.id) == RiskIndicator.kpi_id)
             .outerjoin(newest, newest.c.kpi_id == RiskIndicator.kpi_id)
             .outerjoin(latest, and_(latest.c.kpi_id == newest.c.kpi_id, latest.c.measured_on == newest.c.measured_on))
             .outerjoin(breach, breach.c.id == RiskIndicator.last_breach_measurement_id)
             .order_by(col(RiskIndicator.risk_id), KpiDefinition.code))
    if risk_ids is not None:
        query = query.where(col(RiskIndicator.risk_id).in_(list(risk_ids)))
    found: dict[int, list[KriValue]] = {}
    for indicator, code, name, unit, measurement_id, measured_on, value, breach_on in db.execute(query):
        found.setdefault(indicator.risk_id, []).append(KriValue(
            indicator.id or 0, indicator.risk_id, indicator.kpi_id, code, name, unit, indicator.threshold,
            indicator.breach_when, measurement_id, measured_on, value, indicator.last_breach_measurement_id,
            breach_on))
    return found


def kri_breaches(db: Session) -> list[KriValue]:
    """Indicators of active risks whose KPI's latest measurement breaches and is newer than the last breach a
    re-score was asked for: what the daily dispatch starts a review for."""
    active = set(db.execute(select(col(Risk.id)).where(col(Risk.active).is_(True))).scalars())
    return [kri for risk_id, kris in latest_kri_values(db, active).items() for kri in kris if kri.newly_breached]


@dataclass(frozen=True)
class ControlFinding:
    """A finding raised on one of a risk's controls (a control test that failed or went unanswered)."""

    risk_id: int
    finding_id: int
    control_id: int
    control_ref: str
    control_title: str
    severity: Criticality
    status: FindingStatus
    description: str
    created_at: datetime


def findings_on_controls(db: Session, risk_ids: Iterable[int], since: datetime | None = None
                         ) -> dict[int, list[ControlFinding]]:
    """Findings raised on each risk's linked controls after `since` — or, when None, after each risk's own last
    review (every one for a risk never reviewed): one query, newest first."""
    query = (select(col(RiskControl.risk_id), Finding, col(Control.id), col(Control.ref), col(Control.title))
             .join(ControlTest, col(ControlTest.control_id) == RiskControl.control_id)
             .join(Finding, and_(col(Finding.origin_type) == CONTROL_TEST, col(Finding.origin_id) == ControlTest.id))
             .join(Control, col(Control.id) == RiskControl.control_id)
             .join(Risk, col(Risk.id) == RiskControl.risk_id)
             .where(col(RiskControl.risk_id).in_(list(risk_ids)))
             .order_by(col(RiskControl.risk_id), col(Finding.created_at).desc(), col(Finding.id).desc()))
    if since is not None:
        query = query.where(col(Finding.created_at) > as_utc(since))
    else:
        query = query.where(or_(col(Risk.last_reviewed_at).is_(None), col(Finding.created_at) > Risk.last_reviewed_at))
    found: dict[int, list[ControlFinding]] = {}
    for risk_id, finding, control_id, ref, title in db.execute(query):
        found.setdefault(risk_id, []).append(ControlFinding(
            risk_id, finding.id or 0, control_id, ref, title, finding.severity, finding.status, finding.description,
            finding.created_at))
    return found


@dataclass(frozen=True)
class Assessed:
    """One assessment of a risk as plain data."""

    id: int
    risk_id: int
    scores: rules.Scores
    inherent_level: str
    residual_level: str
    rationale: str
    reason: str
    assessed_by_id: int | None
    assessed_at: datetime
    changed: bool


def _assessed(row: RiskAssessment) -> Assessed:
    return Assessed(row.id or 0, row.risk_id, rules.Scores(row.inherent_likelihood, row.inherent_impact,
                                                          row.residual_likelihood, row.residual_impact),
                    row.inherent_level, row.residual_level, row.rationale, row.reason, row.assessed_by_id,
                    row.assessed_at, row.changed)


@dataclass(frozen=True)
class History:
    current: Assessed
    previous: Assessed | None
    """The assessment before the current one: a review's move is current against it."""


def latest_assessments(db: Session, risk_ids: Iterable[int] | None = None) -> dict[int, History]:
    """Each risk's latest assessment and the one before it: one query (a row number per risk, newest first)."""
    number = func.row_number().over(partition_by=col(RiskAssessment.risk_id),
                                    order_by=col(RiskAssessment.id).desc()).label("n")
    ranked = select(col(RiskAssessment.id), number)
    if risk_ids is not None:
        ranked = ranked.where(col(RiskAssessment.risk_id).in_(list(risk_ids)))
    inner = ranked.subquery("ranked")
    query = (select(RiskAssessment, inner.c.n).join(inner, inner.c.id == RiskAssessment.id)
             .where(inner.c.n <= 2).order_by(col(RiskAssessment.risk_id), inner.c.n))
    pairs: dict[int, list[Assessed]] = {}
    for assessment, _n in db.execute(query):
        pairs.setdefault(assessment.risk_id, []).append(_assessed(assessment))
    return {risk_id: History(found[0], found[1] if len(found) > 1 else None) for risk_id, found in pairs.items()}


def assessments_as_of(db: Session, moment: datetime, risk_ids: Iterable[int] | None = None) -> dict[int, Assessed]:
    """The assessment of each risk that stood at `moment` (its latest assessed before it): what a report compares
    today's scores with to show each risk's move over a period. One query."""
    standing = (select(col(RiskAssessment.risk_id), func.max(RiskAssessment.id).label("id"))
                .where(col(RiskAssessment.assessed_at) < as_utc(moment)).group_by(col(RiskAssessment.risk_id)))
    if risk_ids is not None:
        standing = standing.where(col(RiskAssessment.risk_id).in_(list(risk_ids)))
    inner = standing.subquery("standing")
    query = select(RiskAssessment).join(inner, inner.c.id == RiskAssessment.id)
    return {row.risk_id: _assessed(row) for row in db.execute(query).scalars()}
