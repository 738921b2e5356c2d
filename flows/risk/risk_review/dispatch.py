"""The risk review's daily dispatcher: a KRI breach or an expired acceptance reopens that risk's review."""

from __future__ import annotations

from prefect import task
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from engine import periods, runs
from engine.followups import fan_out
from engine.once import insert_once, update_once
from engine.work import preview, unit
from flows.risk.risk_review.answers import ACTOR
from flows.risk.risk_review.flow import ReviewParameters
from flows.risk.risk_review.register import kri_breaches
from registry import HumanStep, StepStatus, trail
from registry.risk import AcceptanceStatus, Risk, RiskAcceptance, RiskIndicator, RiskRescore

REVIEWS = "risk-review/risk-review"  # flow/deployment, as prefect.yaml names it


class DispatchParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    rescore_days: int = Field(
        5, ge=1, le=30, title="Re-score window (working days)",
        description="How long each owner has to re-score a risk whose KRI breached or whose acceptance expired.")
    decision_days: int = Field(
        5, ge=1, le=30, title="Decision window (working days)",
        description="How long the Director has to accept or treat such a risk if it stays above appetite.")
    preview: bool = Field(False, title="Preview",
                          description="List the reviews that would be started; record and start nothing.")


class DispatchOutcome(BaseModel):
    status: str
    breaches: list[str] = []
    expired: list[str] = []
    started: list[str] = []
    detail: str = ""


def _asked(db: Session, risk: Risk, key: str, reason: str, *, measurement_id: int | None = None,
           acceptance_id: int | None = None) -> RiskRescore:
    return insert_once(db, RiskRescore(risk_id=risk.id or 0, key=key, reason=reason, measurement_id=measurement_id,
                                       acceptance_id=acceptance_id),
                       lambda: db.exec(select(RiskRescore).where(RiskRescore.key == key)).first())[0]


def _open_rescore(db: Session, risk_id: int) -> bool:
    """Whether the risk has a re-score asked and not yet answered (or not yet asked): a further breach meanwhile
    is what that re-score is about, not a new question."""
    return db.exec(select(RiskRescore.id).outerjoin(HumanStep, col(HumanStep.id) == RiskRescore.step_id)
                   .where(RiskRescore.risk_id == risk_id, col(RiskRescore.assessment_id).is_(None),
                          col(HumanStep.id).is_(None) | (HumanStep.status == StepStatus.pending))).first() is not None


@task
def record_triggers() -> tuple[list[str], list[str]]:
    """The KRI breaches and expired acceptances found today, each recorded once as a re-score request (the
    indicator's last breach and the acceptance's status moved on by one conditional UPDATE each, with it)."""
    breached, expired = [], []
    today = periods.today()
    with unit() as db:
        for kri in kri_breaches(db):
            if not update_once(db, RiskIndicator, kri.indicator_id,
                               where=[_same_breach(kri.last_breach_measurement_id)],
                               values={"last_breach_measurement_id": kri.measurement_id}):
                continue
            risk = db.get(Risk, kri.risk_id)
            assert risk is not None
            trail.record(db, actor=ACTOR, action="risk.kri_breached", entity_type="risk", entity_id=risk.id or 0,
                         data={"kpi": kri.kpi_code, "value": kri.value, "threshold": kri.threshold,
                               "breach_when": kri.breach_when, "measurement_id": kri.measurement_id,
                               "measured_on": kri.measured_on.isoformat() if kri.measured_on else None})
            if _open_rescore(db, risk.id or 0):
                continue  # the re-score already asked answers for this breach too
            _asked(db, risk, f"kri-{risk.code}-{kri.kpi_code}-{kri.measurement_id}", "kri",
                   measurement_id=kri.measurement_id or 0)
            breached.append(f"{risk.code} {kri.kpi_code}")
        for acceptance, risk in db.exec(select(RiskAcceptance, Risk).join(Risk, col(Risk.id) == RiskAcceptance.risk_id)
                                        .where(RiskAcceptance.status == AcceptanceStatus.accepted,
                                               col(RiskAcceptance.accepted_until) < today, col(Risk.active).is_(True))
                                        .order_by(col(Risk.code))):
            if not update_once(db, RiskAcceptance, acceptance.id or 0,
                               where=[col(RiskAcceptance.status) == AcceptanceStatus.accepted],
                               values={"status": AcceptanceStatus.expired}):
                continue
            trail.record(db, actor=ACTOR, action="risk.acceptance_expired", entity_type="risk_acceptance",
                         entity_id=acceptance.id or 0,
                         data={"risk": risk.code, "accepted_until": acceptance.accepted_until.isoformat()
                               if acceptance.accepted_until else None})
            _asked(db, risk, f"expired-{risk.code}-{acceptance.id}", "expired", acceptance_id=acceptance.id or 0)
            expired.append(risk.code)
    return breached, expired


def _same_breach(seen: int | None) -> object:
    column = col(RiskIndicator.last_breach_measurement_id)
    return column.is_(None) if seen is None else column == seen


@task
def start_reviews(params: DispatchParameters) -> list[str]:
    """One risk-review run per re-score request no review has taken yet, keyed by the request (and this
    registry: ids restart with a fresh one, Prefect's keys do not), so a re-run starts nothing twice."""
    with unit() as db:
        waiting = list(db.exec(select(RiskRescore, Risk).join(Risk, col(Risk.id) == RiskRescore.risk_id)
                               .where(col(RiskRescore.occasion_id).is_(None),
                                      col(RiskRescore.reason).in_(("kri", "expired")))
                               .order_by(col(RiskRescore.id))))
    started = []
    for asked, risk in waiting:
        # The request names the risk: no risk_code, which the deployment's form checks against the risks it was
        # registered with (a risk imported since would be refused by the Prefect API).
        child = ReviewParameters(request=asked.key, rescore_days=params.rescore_days,
                                 decision_days=params.decision_days).model_dump(mode="json")
        fan_out(REVIEWS, key=f"risk-review-{runs.registry_id()}-{asked.key}", parameters=child,
                run_name=f"review {risk.code} ({asked.reason})")
        started.append(asked.key)
    return started


@runs.process_flow("risk-review-dispatch")
def risk_review_dispatch(params: DispatchParameters) -> DispatchOutcome:
    """Daily: a key risk indicator beyond its threshold, or a Director's acceptance past its date, reopens the
    review of that risk.

    Finds every indicator of an active risk whose KPI's latest measurement breaches its threshold and is newer
    than the last breach a re-score was asked for, and every acceptance whose date has passed (it is marked
    expired). Each becomes one re-score request, recorded once, and starts one risk-review run for that risk,
    keyed by the request: the owner is asked to re-score and, at the deadline, the Director decides again if the
    risk is still above appetite. A further breach while a re-score is open asks nothing more. Safe to re-run.
    """
    if params.preview:
        with preview("Risk review dispatch: what today's run would start") as shown:
            breached, expired = record_triggers.fn()
        return DispatchOutcome(status="preview", breaches=breached, expired=expired,
                               detail=f"{len(breached) + len(expired)} review(s) would be started "
                                      f"({len(shown.messages)} message(s)); nothing recorded")
    breached, expired = record_triggers()
    started = start_reviews(params)
    return DispatchOutcome(status="dispatched", breaches=breached, expired=expired, started=started,
                           detail=f"{len(breached)} KRI breach(es), {len(expired)} expired acceptance(s); "
                                  f"{len(started)} review run(s) started or found running")
