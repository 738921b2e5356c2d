"""The risk review's tasks: each loads, calls the rules, stores and queues inside one unit of work."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func
from sqlmodel import Session, col, select

from engine import gate, occasions, periods, runs
from engine.deadlines import answer_window, working_days_from_now
from engine.once import insert_ignoring_conflicts, update_once
from engine.settings import get_settings
from engine.work import Digest, unit
from flows.risk.risk_review import answers, rules
from flows.risk.risk_review.answers import ACTOR, PROCESS, TEMPLATES, Scale, scale_of
from flows.risk.risk_review.forms import APPETITE, RESCORE, SCALE, AppetiteDecision
from flows.risk.risk_review.register import findings_on_controls, latest_kri_values, to_review
from registry import HumanStep, Occasion, OccasionStatus, StepStatus, trail
from registry.clock import as_utc, utcnow
from registry.risk import AcceptanceStatus, Risk, RiskAcceptance, RiskAssessment, RiskCategory, RiskRescore

__all__ = ["AppetiteDecision", "ReviewState", "Scope"]

ANSWERABLE_AFTER = timedelta(days=30)  # a late re-score still takes effect; the sweep has escalated it by then


@dataclass(frozen=True)
class Scope:
    """What a review covers: every risk due by cadence, one risk, one category, or one dispatcher's request."""

    risk_code: str = ""
    category: str = ""
    period: str = ""
    request: str = ""


@dataclass(frozen=True)
class Question:
    """A question to the Director the review waits for; `ours` when this review asked it (not another review of
    the same risk, nor a re-score since)."""

    step_id: int
    ours: bool


@dataclass(frozen=True)
class ReviewState:
    """Where a review stands, for the flow to decide what comes next (the phase is its occasion's)."""

    occasion_id: int
    key: str
    period: str
    scope: Scope
    phase: str
    rescore_due_at: datetime
    risks: int = 0
    rescored: int = 0
    above_appetite: int = 0
    accepted: int = 0
    treated: int = 0


def _deadline(opened_at: datetime, days: int, minutes: int | None) -> datetime:
    """When owners must have answered: a trial window in minutes, else the working days, from the opening."""
    start = as_utc(opened_at)
    return start + timedelta(minutes=minutes) if minutes else working_days_from_now(days, start=start)


def _risk(db: Session, code: str) -> Risk:
    found = db.exec(select(Risk).where(Risk.code == code)).first()
    if found is None:
        known = ", ".join(db.exec(select(Risk.code).where(col(Risk.active).is_(True)).order_by(col(Risk.code))))
        raise ValueError(f"risk {code!r} does not exist (known: {known or 'none'})")
    return found


def _category(db: Session, code: str) -> RiskCategory:
    found = db.exec(select(RiskCategory).where(RiskCategory.code == code)).first()
    if found is None:
        known = ", ".join(db.exec(select(RiskCategory.code).order_by(col(RiskCategory.code)))) or "none"
        raise ValueError(f"risk category {code!r} does not exist (known: {known})")
    return found


def _opening(db: Session, scope: Scope, period: periods.Period) -> tuple[str, str, str, list[Risk]]:
    """The occasion's key and title, the reason its re-scores are asked for, and the risks it covers."""
    active = select(Risk).where(col(Risk.active).is_(True)).order_by(col(Risk.code))
    if scope.request:
        asked = db.exec(select(RiskRescore).where(RiskRescore.key == scope.request)).first()
        if asked is None:
            raise ValueError(f"re-score request {scope.request!r} does not exist")
        risk = db.get(Risk, asked.risk_id)
        assert risk is not None
        why = "KRI breach" if asked.reason == "kri" else "acceptance expired"
        return scope.request, f"Risk review of {risk.code} ({why})", asked.reason, [risk]
    if scope.risk_code:
        risk = _risk(db, scope.risk_code)
        return f"{period.name} {risk.code}", f"Risk review of {risk.code} {period.name}", "ui", [risk]
    if scope.category:
        category = _category(db, scope.category)
        risks = list(db.exec(active.where(Risk.category_id == category.id)))
        return f"{period.name} {category.code}", f"Risk review of {category.name} {period.name}", "ui", risks
    _, end = period.bounds(get_settings().timezone)
    due = [row.risk_id for row in to_review(db, end)]
    return period.name, f"Risk review {period.name}", "cadence", list(db.exec(active.where(col(Risk.id).in_(due))))


def in_scope(db: Session, occasion: Occasion, scope: Scope) -> list[Risk]:
    """The risks whose appetite the review decides on: the whole active register for the quarterly review (the
    Director sees every risk above appetite each quarter), else the risks it re-scores."""
    if not (scope.request or scope.risk_code or scope.category):
        return list(db.exec(select(Risk).where(col(Risk.active).is_(True)).order_by(col(Risk.code))))
    return list(db.exec(select(Risk).join(RiskRescore, col(RiskRescore.risk_id) == Risk.id)
                        .where(RiskRescore.occasion_id == occasion.id).order_by(col(Risk.code))))


def _state(db: Session, occasion: Occasion, scope: Scope, deadline: datetime) -> ReviewState:
    asked = list(db.exec(select(RiskRescore).where(RiskRescore.occasion_id == occasion.id)))
    above = [s for s in standings(db, in_scope(db, occasion, scope)) if s.above]
    decided = [s.decision.status for s in above if s.decision is not None]
    return ReviewState(occasion_id=occasion.id or 0, key=occasion.key, period=scope.period, scope=scope,
                       phase=occasion.phase, rescore_due_at=deadline, risks=len(asked),
                       rescored=sum(a.assessment_id is not None for a in asked), above_appetite=len(above),
                       accepted=decided.count(AcceptanceStatus.accepted),
                       treated=decided.count(AcceptanceStatus.treating))


def _occasion(db: Session, state: ReviewState) -> Occasion:
    occasion = db.get(Occasion, state.occasion_id)
    assert occasion is not None, f"occasion {state.occasion_id} does not exist"
    return occasion


@task
def open_review(scope: Scope, rescore_days: int = 5, rescore_minutes: int | None = None,
                parameters: dict[str, Any] | None = None) -> ReviewState:
    """The review and its occasion, created with a re-score for every risk it covers, due one window from now, and
    the opening run's `parameters`; opened already (by an earlier or a concurrent run), as it stands: a re-run given
    another window does not move its deadline."""
    tz = get_settings().timezone
    period = periods.parse(scope.period, periods.today()) if scope.period else periods.quarter_of_day(periods.today())
    scope = Scope(risk_code=scope.risk_code, category=scope.category, period=period.name, request=scope.request)
    with unit() as db:
        key, title, reason, risks = _opening(db, scope, period)
        start, end = period.bounds(tz)
        occasion, created = occasions.open_occasion(
            db, process=PROCESS, key=key, title=title, period_start=start, period_end=end,
            flow_run_id=runs.current_run_id(), status=OccasionStatus.collecting, phase="collecting",
            due_at=_deadline(utcnow(), rescore_days, rescore_minutes), parameters=parameters)
        if created:
            if scope.request:
                update_once(db, RiskRescore, db.exec(select(RiskRescore.id).where(
                    RiskRescore.key == scope.request)).one() or 0, where=[col(RiskRescore.occasion_id).is_(None)],
                    values={"occasion_id": occasion.id})
            elif risks:
                # One INSERT … ON CONFLICT DO NOTHING: a concurrent opening's rows are kept, not doubled.
                rows = [{"risk_id": r.id, "occasion_id": occasion.id, "key": f"{key}/{r.code}", "reason": reason,
                         "created_at": utcnow()} for r in risks]
                db.execute(insert_ignoring_conflicts(db, RiskRescore.__table__).values(rows))  # type: ignore[attr-defined]
            trail.record(db, actor=ACTOR, action="risk_review.opened", entity_type="occasion",
                         entity_id=occasion.id or 0, data={"key": key, "reason": reason,
                                                           "risks": [r.code for r in risks]})
        # A review opened before occasions held a deadline (0015): this run's window from its opening, as before.
        deadline = as_utc(occasion.due_at or _deadline(occasion.opened_at, rescore_days, rescore_minutes))
        return _state(db, occasion, scope, deadline)


def _kri_rows(db: Session, risk_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each risk's indicators as its owner reads them: the KPI, its latest value and the threshold."""
    return {risk_id: [{
        "indicator": f"{kri.kpi_code} {kri.kpi_name}",
        "latest": "no measurement yet" if kri.value is None else f"{kri.value:g} {kri.unit}".strip(),
        "measured on": kri.measured_on.isoformat() if kri.measured_on else "—",
        "threshold": f"{kri.breach_when} {kri.threshold:g} {kri.unit}".strip() + " is a breach",
        "breached": kri.breached} for kri in kris]
        for risk_id, kris in latest_kri_values(db, risk_ids).items()}


def _finding_rows(db: Session, risk_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The findings raised on each risk's controls since its last review."""
    return {risk_id: [{"control": f"{f.control_ref} {f.control_title}", "severity": f.severity.value,
                       "status": f.status.value, "raised": f"{periods.today(at=as_utc(f.created_at)):%d %b %Y}",
                       "finding": f.description} for f in found]
            for risk_id, found in findings_on_controls(db, risk_ids).items()}


def _day(moment: datetime | None) -> str:
    return "never" if moment is None else f"{periods.today(at=as_utc(moment)):%d %b %Y}"


def _decisions(db: Session, risk_ids: list[int]) -> dict[int, str]:
    """Each risk's decision in force (accepted until a date, or treated), as its owner reads it before re-scoring:
    a change of score voids it."""
    held = db.exec(select(RiskAcceptance).where(col(RiskAcceptance.risk_id).in_(risk_ids), col(RiskAcceptance.status)
                                                .in_((AcceptanceStatus.accepted, AcceptanceStatus.treating))))
    return {a.risk_id: (f"accepted until {a.accepted_until:%d %b %Y}" if a.accepted_until else f"treated: {a.action}")
            + " — a change of score voids it and asks the Director again" for a in held}


def rescore_details(db: Session, risk: Risk, scale: Scale, category: RiskCategory, kris: list[dict[str, Any]],
                    found: list[dict[str, Any]], decision: str = "") -> dict[str, Any]:
    """What the owner's page shows: the risk, its last score, the Director's decision in force on it, its KRIs and
    the findings on its controls."""
    matrix = scale.matrix
    return {"risk": f"{risk.code} {risk.title}", "category": f"{category.name} (appetite: {category.appetite} "
                                                             "at most)",
            "cause": risk.cause, "event": risk.event, "consequence": risk.consequence,
            "inherent (likelihood × impact)": scale.score(risk.inherent_likelihood, risk.inherent_impact),
            "residual (likelihood × impact)": scale.score(risk.residual_likelihood, risk.residual_impact),
            "treatment": f"{risk.treatment.value}" + (f": {risk.treatment_plan}" if risk.treatment_plan else ""),
            "last reviewed": _day(risk.last_reviewed_at), **({"director's decision": decision} if decision else {}),
            "likelihood scale": scale.axis(list(matrix.likelihoods)), "impact scale": scale.axis(list(matrix.impacts)),
            "key risk indicators": kris or "none", "findings on its controls since the last review": found or "none",
            SCALE: answers.scale_detail(scale, risk)}


@task
def ask_rescores(state: ReviewState) -> int:
    """One re-score step per risk of the review, and one message per owner listing theirs; how many owners were
    asked now (none on a re-run)."""
    with unit() as db:
        occasion = _occasion(db, state)
        unasked = list(db.exec(select(RiskRescore, Risk).join(Risk, col(Risk.id) == RiskRescore.risk_id)
                               .where(RiskRescore.occasion_id == occasion.id, col(RiskRescore.step_id).is_(None))
                               .order_by(col(Risk.code))))
        if not unasked:
            return 0
        first = unasked[0][0]
        deadline = state.rescore_due_at
        risks = [risk for _, risk in unasked]
        ids = [r.id or 0 for r in risks]
        kris, found, decided = _kri_rows(db, ids), _finding_rows(db, ids), _decisions(db, ids)
        categories = {c.id: c for c in db.exec(select(RiskCategory))}
        # Keyed by the batch: a re-run asks nobody again, a risk added later to the same review is still told.
        asks = Digest(key=f"risk-review-{occasion.id}-rescore-{first.id}", template=f"{TEMPLATES}/rescore_request",
                      context={"review": {"title": occasion.title, "key": occasion.key, "due_at": deadline,
                                          "reason": first.reason}},
                      items_as="risks")
        scales: dict[int, Scale] = {}
        for asked, risk in unasked:
            scale = scales.setdefault(risk.matrix_id, scale_of(db, risk.matrix_id))
            category = categories[risk.category_id]
            item = {**answers.risk_item(db, risk, scale, category), "last_reviewed": _day(risk.last_reviewed_at),
                    "kris": kris.get(risk.id or 0, []), "findings": found.get(risk.id or 0, [])}
            step = asks.ask(db, item=item, key=f"risk-rescore-{asked.key}", person_id=risk.owner_id, form=RESCORE,
                            title=f"Re-score risk {risk.code}: {risk.title}", subject_type=answers.RESCORE_SUBJECT,
                            subject_id=asked.id or 0, due_at=deadline, expires_at=deadline + ANSWERABLE_AFTER,
                            details=rescore_details(db, risk, scale, category, kris.get(risk.id or 0, []),
                                                    found.get(risk.id or 0, []), decided.get(risk.id or 0, "")),
                            actor=ACTOR)
            asked.step_id = step.id
            db.add(asked)
        asks.queue(db)
        return len(asks.items)


# ---- appetite: the Director's decisions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Standing:
    """A risk of the review as the appetite sees it."""

    risk: Risk
    scale: Scale
    category: RiskCategory
    above: bool
    scored_state: int | None
    """The assessment that set its current scores (a confirmation does not change it)."""
    decision: RiskAcceptance | None
    """The decision that covers that state: pending, treating, or an acceptance still valid."""


def scored_states(db: Session, risk_ids: list[int]) -> dict[int, int]:
    """Each risk's assessment that set its current scores: the latest that changed them (a confirmation records
    a review, not a new state, so an acceptance given before it still holds)."""
    rows = db.exec(select(RiskAssessment.risk_id, func.max(RiskAssessment.id))
                   .where(col(RiskAssessment.risk_id).in_(risk_ids), col(RiskAssessment.changed).is_(True))
                   .group_by(col(RiskAssessment.risk_id)))
    return {risk_id: latest for risk_id, latest in rows if latest is not None}


def _covers(acceptance: RiskAcceptance, scored_state: int | None, today: date) -> bool:
    """Whether a decision covers the risk's current state: asked or treated for it, or accepted for it and not
    past its last day."""
    if acceptance.assessment_id != scored_state:
        return False
    if acceptance.status in (AcceptanceStatus.pending, AcceptanceStatus.treating):
        return True
    return rules.acceptance_valid(rules.Acceptance(acceptance.status.value, acceptance.assessment_id,
                                                   acceptance.accepted_until), scored_state, today)


def standings(db: Session, risks: list[Risk]) -> list[Standing]:
    """Whether each risk is above its category's appetite and which decision covers its current state: a few
    queries whatever the number of risks."""
    ids = [r.id or 0 for r in risks]
    states = scored_states(db, ids)
    categories = {c.id: c for c in db.exec(select(RiskCategory))}
    scales: dict[int, Scale] = {}
    covering: dict[int, RiskAcceptance] = {}
    today = periods.today()
    for acceptance in db.exec(select(RiskAcceptance).where(col(RiskAcceptance.risk_id).in_(ids),
                                                          col(RiskAcceptance.status).in_(answers.OPEN))
                              .order_by(col(RiskAcceptance.id))):
        if _covers(acceptance, states.get(acceptance.risk_id), today):
            covering[acceptance.risk_id] = acceptance
    found = []
    for risk in risks:
        scale = scales.setdefault(risk.matrix_id, scale_of(db, risk.matrix_id))
        category = categories[risk.category_id]
        found.append(Standing(risk=risk, scale=scale, category=category,
                              above=answers.above_appetite(scale, risk, category),
                              scored_state=states.get(risk.id or 0), decision=covering.get(risk.id or 0)))
    return found


def _catch_up(db: Session, occasion: Occasion) -> int:
    """Apply the review's answered re-scores the gateway did not (it failed after recording, or the sweep has
    not come round yet): the decisions below read the scores those answers set."""
    applied = 0
    for step in db.exec(select(HumanStep).join(RiskRescore, col(RiskRescore.step_id) == HumanStep.id)
                        .where(RiskRescore.occasion_id == occasion.id, col(RiskRescore.assessment_id).is_(None),
                               HumanStep.status == StepStatus.answered)):
        applied += answers.apply_rescore(db, step)
    return applied


@task
def ask_director(state: ReviewState, decision_days: int) -> int:
    """At the re-score deadline: every risk of the review above its category's appetite with no decision covering
    its current state is put to the Director, in one message; how many. Claimed from "collecting" first: of two
    runs at the same moment one asks, the other asks nothing."""
    with unit() as db:
        occasion = _occasion(db, state)
        # The runner starts a scheduled run a few seconds early; waited before the claim holds any lock.
        if state.risks:
            time.sleep(max(0.0, (as_utc(state.rescore_due_at) - utcnow()).total_seconds()))
        if not occasions.claim_phase(db, occasion.id or 0, "collecting", "deciding"):
            return 0
        _catch_up(db, occasion)
        due, final = answer_window(decision_days)
        undecided = [s for s in standings(db, in_scope(db, occasion, state.scope))
                     if s.above and s.decision is None and s.scored_state is not None]
        told = gate.Digest(key=f"risk-review-{occasion.id}-appetite", template=f"{TEMPLATES}/appetite_request",
                           context={"review": {"title": occasion.title, "key": occasion.key}, "again": False,
                                    "due_at": due}, items_as="risks")
        for standing in undecided:
            risk, assessment = standing.risk, db.get(RiskAssessment, standing.scored_state)
            assert assessment is not None
            answers.ask_director(db, risk=risk, assessment=assessment, scale=standing.scale,
                                 category=standing.category, key=f"{risk.id}-{assessment.id}-o{occasion.id}",
                                 occasion_id=occasion.id, due_at=due, expires_at=final, gates=told)
        told.queue(db)
        trail.record(db, actor=ACTOR, action="risk_review.appetite_asked", entity_type="occasion",
                     entity_id=occasion.id or 0, data={"risks": [s.risk.code for s in undecided]})
        return len(undecided)


@task(cache_policy=NO_CACHE)  # called again after every wait in the same run: it must read the registry afresh
def next_decision(state: ReviewState, held_elsewhere: tuple[int, ...] = ()) -> Question | None:
    """The Director's next open question on a risk of the review (asked by this review, by a re-score since, or by
    another review of the same risk), or None when every one is settled; questions another live run waits for, as
    the flow found, left out."""
    with unit() as db:
        occasion = _occasion(db, state)
        ids = [r.id for r in in_scope(db, occasion, state.scope)]
        found = db.exec(select(HumanStep.id, RiskAcceptance.occasion_id)
                        .join(RiskAcceptance, col(RiskAcceptance.step_id) == HumanStep.id)
                        .where(col(RiskAcceptance.risk_id).in_(ids), RiskAcceptance.status == AcceptanceStatus.pending,
                               HumanStep.status == StepStatus.pending, col(HumanStep.id).not_in(held_elsewhere))
                        .order_by(col(HumanStep.id))).first()
        if found is None:
            return None
        step_id, asked_by = found
        return Question(step_id=step_id or 0, ours=asked_by == occasion.id)


@task(cache_policy=NO_CACHE)
def settle_decision(step_id: int) -> str:
    """What the Director's answer (or silence) did: applied once (the gateway has usually applied it already)."""
    with unit() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None and step.form == APPETITE
        acceptance = db.get(RiskAcceptance, step.subject_id)
        assert acceptance is not None
        if step.status == StepStatus.answered:
            answers.apply_appetite(db, step)
        elif acceptance.status == AcceptanceStatus.pending and update_once(
                db, RiskAcceptance, acceptance.id or 0, where=[col(RiskAcceptance.status) == AcceptanceStatus.pending],
                values={"status": AcceptanceStatus.voided, "voided_at": utcnow(),
                        "void_reason": f"not decided: the question {step.status.value}"}):
            # Undecided: the next review asks again (a new question for the same state).
            trail.record(db, actor=ACTOR, action="risk.acceptance_undecided", entity_type="risk_acceptance",
                         entity_id=acceptance.id or 0, data={"step_id": step_id, "outcome": step.status.value})
        db.refresh(acceptance)
        return acceptance.status.value


@task
def close_review(state: ReviewState) -> ReviewState:
    """The review closes once the Director has nothing left to decide; its re-score steps stay answerable (an
    answer still takes effect), the report says who had not answered."""
    with unit() as db:
        occasion = _occasion(db, state)
        occasions.close(db, occasion, actor=ACTOR)
        if occasion.phase != "closed":
            occasion.phase = "closed"
            db.add(occasion)
            db.flush()
        return _state(db, occasion, state.scope, state.rescore_due_at)
