"""Answers of the risk review that take effect the moment they are given (engine.processes.Applier).

- A re-score (`risk_rescore`, subject a RiskRescore): a new RiskAssessment, the risk's scores, its last and next
  review (its level's cadence); a change of score voids every acceptance given for an earlier state, and when the
  risk is still above its category's appetite the Director is asked again at once.
- An appetite decision (`risk_appetite`, subject a RiskAcceptance): accepted until a date, or treated — a
  corrective action for the person named, through engine.findings.

Cheap to import (engine and registry only, no Prefect): the gateway and the sweep call these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from engine import human_steps, notify, periods
from engine.answers import answer_of
from engine.deadlines import answer_window, next_due, working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.human_steps import ask
from engine.once import insert_once, update_once
from engine.processes import Applier
from engine.settings import get_settings
from flows.risk.risk_review.forms import (
    APPETITE,
    LONGEST_ACCEPTANCE,
    LONGEST_ACCEPTANCE_DAYS,
    RESCORE,
    SCALE,
    AppetiteDecision,
    Rescore,
    owner_id,
)
from flows.risk.risk_review.section import ink
from registry import Criticality, HumanStep, Occasion, Person, StepStatus, trail
from registry.clock import as_utc, utcnow
from registry.people import get_person, person_with_role
from registry.risk import (
    AcceptanceStatus,
    Risk,
    RiskAcceptance,
    RiskAssessment,
    RiskCategory,
    RiskLevel,
    RiskMatrix,
    RiskRescore,
)

if TYPE_CHECKING:  # engine.gate imports Prefect, which this module must not
    from engine.gate import Digest as GateDigest

PROCESS = ACTOR = "risk-review"
TEMPLATES = "risk/risk_review"
RESCORE_SUBJECT, APPETITE_SUBJECT = "risk_rescore", "risk_acceptance"
DIRECTOR = "director"
ORIGIN, CODE = "risk_acceptance", "treatment"  # a treatment's finding: raised on the acceptance decided
OPEN = (AcceptanceStatus.pending, AcceptanceStatus.accepted, AcceptanceStatus.treating)
DECISION_DAYS = 5  # the Director's window when a re-score asks again outside a review run


# ---- the risk as people read it -------------------------------------------------------------------------------

class Scale:
    """A risk's matrix with its levels: the level of a score, its rank and colour, the labels of its axes."""

    def __init__(self, matrix: RiskMatrix, levels: Iterable[RiskLevel]) -> None:
        self.matrix = matrix
        self.levels = {level.name: level for level in levels}

    def level(self, likelihood: int, impact: int) -> RiskLevel:
        return self.levels[self.matrix.cells[likelihood - 1][impact - 1]]

    def rank(self, name: str) -> int:
        return self.levels[name].rank if name in self.levels else 0

    def score(self, likelihood: int, impact: int) -> str:
        """"4 × 3 High": likelihood × impact and the level."""
        return f"{likelihood} × {impact} {self.level(likelihood, impact).name}"

    def axis(self, labels: list[str]) -> str:
        return " · ".join(f"{n} {label}" for n, label in enumerate(labels, start=1))


def scale_of(db: Session, matrix_id: int) -> Scale:
    matrix = db.get(RiskMatrix, matrix_id)
    if matrix is None:
        raise ValueError(f"risk matrix {matrix_id} does not exist")
    return Scale(matrix, db.exec(select(RiskLevel).where(RiskLevel.matrix_id == matrix_id)))


def scores(risk: Risk) -> tuple[int, int, int, int]:
    return (risk.inherent_likelihood, risk.inherent_impact, risk.residual_likelihood, risk.residual_impact)


def above_appetite(scale: Scale, risk: Risk, category: RiskCategory) -> bool:
    """Whether the risk's residual level ranks above its category's appetite (an unknown appetite: any level)."""
    residual = scale.level(risk.residual_likelihood, risk.residual_impact)
    return residual.rank > scale.rank(category.appetite)


def severity_of(scale: Scale, level: RiskLevel) -> Criticality:
    """A treatment's finding is as severe as the residual level is high on its matrix: the top level high, the
    one below it medium, any lower low."""
    top = max(lv.rank for lv in scale.levels.values())
    return Criticality.high if level.rank >= top else Criticality.medium if level.rank == top - 1 else Criticality.low


def latest_assessment(db: Session, risk_id: int) -> RiskAssessment | None:
    return db.exec(select(RiskAssessment).where(RiskAssessment.risk_id == risk_id)
                   .order_by(col(RiskAssessment.id).desc())).first()


def risk_item(db: Session, risk: Risk, scale: Scale, category: RiskCategory) -> dict[str, Any]:
    """What messages say of a risk."""
    inherent = scale.level(risk.inherent_likelihood, risk.inherent_impact)
    residual = scale.level(risk.residual_likelihood, risk.residual_impact)
    owner = db.get(Person, risk.owner_id)
    return {"code": risk.code, "title": risk.title, "category": category.name, "owner": owner.name if owner else "",
            "inherent": scale.score(risk.inherent_likelihood, risk.inherent_impact),
            "inherent_colour": inherent.colour, "inherent_ink": ink(inherent.colour),
            "residual": scale.score(risk.residual_likelihood, risk.residual_impact),
            "residual_colour": residual.colour, "residual_ink": ink(residual.colour),
            "appetite": category.appetite, "previous": ""}


def scale_detail(scale: Scale, risk: Risk) -> dict[str, Any]:
    """The hidden detail the re-score form is validated against (forms.SCALE)."""
    return {"likelihoods": list(scale.matrix.likelihoods), "impacts": list(scale.matrix.impacts),
            "current": list(scores(risk))}


# ---- a re-score ------------------------------------------------------------------------------------------------

def apply_rescore(db: Session, step: HumanStep) -> bool:
    """The owner's re-score (or confirmation), applied once: keyed by the step (an assessment per answer)."""
    answer = answer_of(step, Rescore) if step.form == RESCORE else None
    asked = db.get(RiskRescore, step.subject_id)
    if answer is None or asked is None or asked.assessment_id is not None:
        return False
    risk = db.get(Risk, asked.risk_id)
    assert risk is not None
    scale = scale_of(db, risk.matrix_id)
    before = scores(risk)
    il, ii, rl, ri = answer.scores(before)
    changed = (il, ii, rl, ri) != before
    now = utcnow()
    assessment, created = insert_once(db, RiskAssessment(
        risk_id=risk.id or 0, inherent_likelihood=il, inherent_impact=ii, residual_likelihood=rl,
        residual_impact=ri, inherent_level=scale.level(il, ii).name, residual_level=scale.level(rl, ri).name,
        rationale=answer.rationale.strip(), reason=asked.reason, step_id=step.id,
        assessed_by_id=step.answered_by_id or step.person_id, assessed_at=step.answered_at or now, changed=changed),
        lambda: db.exec(select(RiskAssessment).where(RiskAssessment.step_id == step.id)).first())
    # Of two appliers of the same answer (the gateway and the sweep), the one that made the assessment moves on.
    claimed = update_once(db, RiskRescore, asked.id or 0, where=[col(RiskRescore.assessment_id).is_(None)],
                          values={"assessment_id": assessment.id})
    if not (created and claimed):
        return False
    residual = scale.level(rl, ri)
    risk.inherent_likelihood, risk.inherent_impact, risk.residual_likelihood, risk.residual_impact = il, ii, rl, ri
    risk.last_reviewed_at = now
    risk.next_review_at = next_due(residual.review_cadence, now, get_settings().timezone)
    db.add(risk)
    answerer = get_person(db, step.answered_by_id or step.person_id)
    trail.record(db, actor=answerer.email, action="risk.rescored" if changed else "risk.confirmed",
                 entity_type="risk", entity_id=risk.id or 0,
                 data={"step_id": step.id, "assessment_id": assessment.id, "reason": asked.reason,
                       "before": list(before), "after": [il, ii, rl, ri], "residual_level": residual.name,
                       "rationale": answer.rationale.strip(), "next_review_at": risk.next_review_at.isoformat()})
    if changed:
        voided = void_acceptances(db, risk, assessment, reason=f"re-scored by {answerer.name} (step {step.id})")
        category = db.get(RiskCategory, risk.category_id)
        assert category is not None
        # Asked at once when nobody else will ask: a decision voided, or the review past its re-score deadline (its
        # Director's questions asked already, or the review closed: a late answer would wait a quarter otherwise).
        if above_appetite(scale, risk, category) and (voided or _past_deadline(db, asked)):
            ask_again(db, risk, assessment, scale, category, voided[0] if voided else None, asked.occasion_id)
    return True


def _past_deadline(db: Session, asked: RiskRescore) -> bool:
    occasion = db.get(Occasion, asked.occasion_id) if asked.occasion_id is not None else None
    return occasion is not None and occasion.phase != "collecting"


def void_acceptances(db: Session, risk: Risk, assessment: RiskAssessment, *, reason: str) -> list[RiskAcceptance]:
    """Every open decision on the risk given (or being asked) for an earlier scored state, voided; a question
    still open is withdrawn (its step cancelled, so its link dies and a run waiting for it moves on)."""
    now = utcnow()
    open_ones = list(db.exec(select(RiskAcceptance).where(
        RiskAcceptance.risk_id == risk.id, col(RiskAcceptance.status).in_(OPEN),
        col(RiskAcceptance.assessment_id) != assessment.id).order_by(col(RiskAcceptance.id))))
    voided = []
    for acceptance in open_ones:
        if not update_once(db, RiskAcceptance, acceptance.id or 0, where=[col(RiskAcceptance.status).in_(OPEN)],
                           values={"status": AcceptanceStatus.voided, "voided_at": now, "void_reason": reason}):
            continue
        was = acceptance.status
        if acceptance.step_id is not None:
            withdraw(db, acceptance.step_id)
        db.refresh(acceptance)
        trail.record(db, actor=ACTOR, action="risk.acceptance_voided", entity_type="risk_acceptance",
                     entity_id=acceptance.id or 0,
                     data={"risk": risk.code, "was": was.value, "given_for": acceptance.assessment_id,
                           "now": assessment.id, "reason": reason})
        voided.append(acceptance)
    return voided


def withdraw(db: Session, step_id: int) -> bool:
    """A question that no longer stands: the step cancelled while pending (a run waiting for it resumes)."""
    step = db.get(HumanStep, step_id)
    return step is not None and human_steps.cancel(
        db, step, actor=ACTOR, reason="the risk was re-scored: the question no longer describes it")


def director(db: Session) -> Person:
    found = person_with_role(db, DIRECTOR)
    if found is None:
        raise ValueError(f"no person has the role {DIRECTOR!r}, so nobody can accept or treat a risk above "
                         "appetite: give the role to the Director and run again")
    return found


def last_score(db: Session, assessment: RiskAssessment) -> str:
    """How the current score was given: imported, confirmed or re-scored, by whom and when, and why if it moved (a
    confirmation has no rationale of its own)."""
    by = db.get(Person, assessment.assessed_by_id) if assessment.assessed_by_id is not None else None
    how = "imported" if assessment.reason == "import" else "re-scored" if assessment.changed else "confirmed"
    said = f"{how}{f' by {by.name}' if by else ''} on {periods.today(at=as_utc(assessment.assessed_at)):%d %b %Y}"
    return f"{said}: {assessment.rationale.strip()}" if assessment.rationale.strip() else said


def appetite_details(db: Session, risk: Risk, scale: Scale, category: RiskCategory,
                     assessment: RiskAssessment, previous: str = "") -> dict[str, Any]:
    """What the Director's page shows of the risk, and the bound an acceptance is validated against."""
    owner = db.get(Person, risk.owner_id)
    return {"risk": f"{risk.code} {risk.title}", "category": category.name, "owner": owner.name if owner else "",
            "cause": risk.cause, "event": risk.event, "consequence": risk.consequence,
            "inherent": scale.score(risk.inherent_likelihood, risk.inherent_impact),
            "residual": scale.score(risk.residual_likelihood, risk.residual_impact),
            "appetite": f"{category.appetite} at most", "treatment": risk.treatment.value,
            "treatment plan": risk.treatment_plan, "last score": last_score(db, assessment),
            **({"earlier decision": previous} if previous else {}), LONGEST_ACCEPTANCE: LONGEST_ACCEPTANCE_DAYS}


def ask_director(db: Session, *, risk: Risk, assessment: RiskAssessment, scale: Scale, category: RiskCategory,
                 key: str, occasion_id: int | None, due_at: datetime, expires_at: datetime,
                 previous: str = "", gates: GateDigest | None = None) -> tuple[RiskAcceptance, HumanStep]:
    """The acceptance asked for the risk's current assessment and the Director's step (keyed: asked once). In a
    review's run the step is a gate of `gates` (the run waits for it; the risk listed in the digest's message);
    without, the caller puts the step in its message."""
    acceptance, _ = insert_once(db, RiskAcceptance(risk_id=risk.id or 0, assessment_id=assessment.id or 0, key=key,
                                                   occasion_id=occasion_id),
                                lambda: db.exec(select(RiskAcceptance).where(RiskAcceptance.key == key)).first())
    question: dict[str, Any] = {
        "key": f"risk-appetite-{key}", "form": APPETITE, "title": f"Risk {risk.code} above appetite: accept or treat",
        "subject_type": APPETITE_SUBJECT, "subject_id": acceptance.id or 0, "due_at": due_at,
        "expires_at": expires_at, "details": appetite_details(db, risk, scale, category, assessment, previous),
        "actor": ACTOR}
    boss = director(db).id or 0
    if gates is None:
        step = ask(db, person_id=boss, **question)
    else:
        step = gates.ask(db, item=risk_item(db, risk, scale, category), approver_id=boss, **question)
    if acceptance.step_id is None:
        acceptance.step_id = step.id
        db.add(acceptance)
    return acceptance, step


def ask_again(db: Session, risk: Risk, assessment: RiskAssessment, scale: Scale, category: RiskCategory,
              voided: RiskAcceptance | None, occasion_id: int | None = None) -> None:
    """The Director asked at once about a risk re-scored above appetite: a decision voided by the re-score, or
    none to void and the review past its deadline (the review's run, if one waits for its risks, waits for this
    one too)."""
    due, final = answer_window(DECISION_DAYS)
    key = f"{risk.id}-{assessment.id}-again"
    previous = f"{_decided(voided)} ({voided.void_reason})" if voided else ""
    _, step = ask_director(db, risk=risk, assessment=assessment, scale=scale, category=category, key=key,
                           occasion_id=voided.occasion_id if voided else occasion_id, due_at=due, expires_at=final,
                           previous=previous)
    item = {**risk_item(db, risk, scale, category), "step_id": step.id, "previous": _decided(voided) if voided else ""}
    boss = get_person(db, step.person_id)
    notify.enqueue(db, key=f"risk-appetite-{key}", recipient_id=boss.id or 0, template=f"{TEMPLATES}/appetite_request",
                   context={"recipient": notify.recipient(boss), "risks": [item], "again": voided is not None,
                            "late": voided is None, "review": {"title": "re-score"}, "due_at": step.due_at})


def _decided(acceptance: RiskAcceptance) -> str:
    if acceptance.decision == "accept" and acceptance.accepted_until:
        return f"accepted until {acceptance.accepted_until:%d %b %Y}, now void"
    if acceptance.decision == "treat":
        return "treatment decided, now void"
    return "asked, now withdrawn"


# ---- the Director's decision -------------------------------------------------------------------------------------

def apply_appetite(db: Session, step: HumanStep) -> bool:
    """Accept until the date, or treat (a corrective action for the person named), once."""
    answer = answer_of(step, AppetiteDecision) if step.form == APPETITE else None
    acceptance = db.get(RiskAcceptance, step.subject_id)
    if answer is None or acceptance is None or acceptance.status != AcceptanceStatus.pending:
        return False
    decided_by = get_person(db, step.answered_by_id or step.person_id)
    values: dict[str, Any] = {"decision": answer.decision, "decided_by_id": decided_by.id,
                              "decided_at": step.answered_at or utcnow()}
    if answer.decision == "accept":
        values |= {"status": AcceptanceStatus.accepted, "accepted_until": answer.accepted_until,
                   "justification": answer.justification.strip()}
    else:
        values |= {"status": AcceptanceStatus.treating, "action": answer.action.strip(),
                   "action_owner_id": owner_id(db, answer.action_owner)}
        if values["action_owner_id"] is None:
            raise ValueError(f"step {step.id}: nobody active has the address {answer.action_owner}")
    if not update_once(db, RiskAcceptance, acceptance.id or 0,
                       where=[col(RiskAcceptance.status) == AcceptanceStatus.pending], values=values):
        return False
    db.refresh(acceptance)
    risk = db.get(Risk, acceptance.risk_id)
    assert risk is not None
    trail.record(db, actor=decided_by.email, action=f"risk.{answer.decision}ed" if answer.decision == "accept"
                 else "risk.treatment_decided", entity_type="risk_acceptance", entity_id=acceptance.id or 0,
                 data={"risk": risk.code, "assessment_id": acceptance.assessment_id, "step_id": step.id,
                       "accepted_until": acceptance.accepted_until.isoformat() if acceptance.accepted_until else None,
                       "justification": acceptance.justification, "action": acceptance.action,
                       "action_owner_id": acceptance.action_owner_id})
    if answer.decision == "treat":
        _treat(db, risk, acceptance, decided_by)
    return True


def _treat(db: Session, risk: Risk, acceptance: RiskAcceptance, decided_by: Person) -> None:
    scale = scale_of(db, risk.matrix_id)
    category = db.get(RiskCategory, risk.category_id)
    assert category is not None and acceptance.action_owner_id is not None
    level = scale.level(risk.residual_likelihood, risk.residual_impact)
    severity = severity_of(scale, level)
    raised = raise_finding(
        db, origin=Origin(ORIGIN, acceptance.id or 0), code=CODE, severity=severity, actor=decided_by.email,
        process=PROCESS, occasion_id=acceptance.occasion_id, verifier_id=decided_by.id,
        description=f"Risk {risk.code} ({risk.title}) is {level.name}, above its category's {category.appetite} "
                    f"appetite: {decided_by.name} decided to treat it.",
        action=ActionSpec(owner_id=acceptance.action_owner_id, description=acceptance.action,
                          due_at=working_days_from_now(working_days_for(severity))))
    update_once(db, RiskAcceptance, acceptance.id or 0, where=[col(RiskAcceptance.finding_id).is_(None)],
                values={"finding_id": raised.finding.id})
    if raised.created and raised.action is not None and raised.step is not None:
        owner = get_person(db, raised.action.owner_id)
        notify.enqueue(db, key=f"risk-treatment-{acceptance.id}", recipient_id=owner.id or 0,
                       template=f"{TEMPLATES}/treatment_action",
                       context={"recipient": notify.recipient(owner), "step_id": raised.step.id,
                                "decided_by": decided_by.name, "risk": risk_item(db, risk, scale, category),
                                "action": {"description": raised.action.description,
                                           "due_at": raised.action.due_at}})


# ---- what the sweep catches up -----------------------------------------------------------------------------------

def unapplied_rescores_statement() -> SelectOfScalar[int | None]:
    """Answered re-scores with no assessment yet: the few unfinished rows (an index on the assessment), each with
    its step by primary key — never the year of applied ones."""
    return (select(col(HumanStep.id)).join(RiskRescore, col(RiskRescore.step_id) == HumanStep.id)
            .where(col(RiskRescore.assessment_id).is_(None), HumanStep.status == StepStatus.answered))


def unapplied_rescores(db: Session) -> list[int]:
    return [i for i in db.exec(unapplied_rescores_statement()) if i is not None]


def unapplied_decisions_statement() -> SelectOfScalar[int | None]:
    """Answered questions to the Director whose acceptance is still pending: the few pending acceptances (an index
    on the status), each with its step by primary key."""
    return (select(col(HumanStep.id)).join(RiskAcceptance, col(RiskAcceptance.step_id) == HumanStep.id)
            .where(RiskAcceptance.status == AcceptanceStatus.pending, HumanStep.status == StepStatus.answered))


def unapplied_decisions(db: Session) -> list[int]:
    return [i for i in db.exec(unapplied_decisions_statement()) if i is not None]


APPLIERS = (Applier(RESCORE_SUBJECT, apply_rescore, unapplied_rescores),
            Applier(APPETITE_SUBJECT, apply_appetite, unapplied_decisions))

__all__ = ["APPLIERS", "SCALE", "Scale", "apply_appetite", "apply_rescore", "scale_of"]
