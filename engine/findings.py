"""Findings and corrective actions, the same for every process: raised once per origin, then a lifecycle.

A process only raises:

    raised = raise_finding(db, origin=Origin("control_test", test.id), code="control", severity=...,
                           description=..., actor="compliance-audit", process="compliance-audit",
                           action=ActionSpec(owner_id=..., description=..., due_at=working_days_from_now(
                               working_days_for(severity))), verifier_id=framework.compliance_manager_id)
    digest.add(raised.action.owner_id, {..., "step_id": raised.step.id})   # the owner's link, in its digest

The action's owner is asked with an "action_done" step due at the action's due date, so the deadline sweep
reminds and escalates it like any other step. The rest is the engine's (engine.findings.apply_answer): done →
the verifier is asked ("action_verification") → verified (the finding closes once all its actions are) or sent
back (a new round: the owner asked again, with the verifier's comment). It is the corrective actions' answer
applier (APPLIER, on engine.appliers like any process's): the gateway applies each answer as it records it, the
sweep catches up what `unapplied` names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CompoundSelect, union_all
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from engine import notify
from engine.answers import answer_of
from engine.deadlines import working_days_from_now
from engine.forms import ActionDone, ActionVerification
from engine.human_steps import ask
from engine.once import insert_once, update_once
from engine.processes import Applier
from engine.work import unit
from registry import (
    ActionStatus,
    CorrectiveAction,
    Criticality,
    Finding,
    FindingStatus,
    HumanStep,
    Person,
    StepStatus,
    session,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import get_person, person_with_role

log = logging.getLogger(__name__)

SUBJECT = "corrective_action"  # the subject_type of every step of an action's lifecycle
DONE_FORM, VERIFY_FORM = "action_done", "action_verification"

# How many working days a corrective action gets, by the finding's severity: the one table every process uses.
ACTION_WORKING_DAYS = {Criticality.high: 10, Criticality.medium: 20, Criticality.low: 40}

VERIFY_WORKING_DAYS = 5  # how long the verifier has to confirm an action worked
VERIFIER_ROLES = ("compliance manager", "director")  # who verifies when the finding names nobody
ACTOR = "corrective-actions"  # the lifecycle's name in the trail when no person's answer drives it

# An action step stays answerable long after its due date: the sweep escalates it once it is late and the owner
# can still report it done; only then does the link die.
STEP_LIFETIME = timedelta(days=180)


def working_days_for(severity: Criticality) -> int:
    """The corrective-action window of a finding this severe, in working days."""
    return ACTION_WORKING_DAYS[Criticality(severity)]


@dataclass(frozen=True)
class Origin:
    """What a finding was found on: a control test, a drill, a vendor review, a plan review…"""

    type: str
    id: int


@dataclass(frozen=True)
class ActionSpec:
    owner_id: int
    description: str
    due_at: datetime


@dataclass(frozen=True)
class Raised:
    finding: Finding
    action: CorrectiveAction | None
    step: HumanStep | None  # the owner's current action_done step
    created: bool  # False: it had been raised before, this is the stored one


def _stored(db: Session, origin: Origin, code: str) -> Finding | None:
    return db.exec(select(Finding).where(Finding.origin_type == origin.type, Finding.origin_id == origin.id,
                                         Finding.code == code)).first()


def _raised(db: Session, finding: Finding, created: bool) -> Raised:
    action = db.exec(select(CorrectiveAction).where(CorrectiveAction.finding_id == finding.id)).first()
    step = db.get(HumanStep, action.step_id) if action is not None and action.step_id else None
    return Raised(finding=finding, action=action, step=step, created=created)


def raise_finding(db: Session, *, origin: Origin, code: str, severity: Criticality, description: str, actor: str,
                  process: str, action: ActionSpec | None, verifier_id: int | None = None,
                  occasion_id: int | None = None) -> Raised:
    """Record the finding `code` of `origin` and its corrective action, and ask the action's owner; raised again
    (a re-run, a concurrent run), it returns the stored one with created=False and asks nobody again."""
    if (found := _stored(db, origin, code)) is not None:
        return _raised(db, found, created=False)
    row = Finding(origin_type=origin.type, origin_id=origin.id, code=code, occasion_id=occasion_id, process=process,
                  severity=severity, description=description, verifier_id=verifier_id)
    finding, created = insert_once(db, row, lambda: _stored(db, origin, code))
    if not created:
        return _raised(db, finding, created=False)
    corrective, step = None, None
    if action is not None:
        corrective = CorrectiveAction(finding_id=finding.id or 0, owner_id=action.owner_id,
                                      description=action.description, due_at=as_utc(action.due_at))
        db.add(corrective)
        db.flush()
        step = ask_owner(db, corrective, finding, actor=actor)
    trail.record(db, actor=actor, action="finding.raised", entity_type="finding", entity_id=finding.id or 0,
                 data={"origin": f"{origin.type}:{origin.id}", "code": code, "process": process,
                       "severity": Criticality(severity).value, "occasion_id": occasion_id,
                       "verifier_id": verifier_id, "action_id": corrective.id if corrective else None,
                       "action_owner": corrective.owner_id if corrective else None,
                       "action_due_at": corrective.due_at.isoformat() if corrective else None,
                       "step_id": step.id if step else None})
    return Raised(finding=finding, action=corrective, step=step, created=True)


def ask_owner(db: Session, action: CorrectiveAction, finding: Finding, *, actor: str,
              comment: str = "") -> HumanStep:
    """The owner's action_done step for the action's current round (keyed by it: asking twice asks once)."""
    step = ask(db, key=f"corrective-action-{action.id}-round-{action.round}-done", person_id=action.owner_id,
               form=DONE_FORM, title=f"Corrective action: {action.description}"[:200], subject_type=SUBJECT,
               subject_id=action.id or 0, due_at=action.due_at,
               expires_at=max(action.due_at, utcnow()) + STEP_LIFETIME,
               details={"finding": finding.description, "severity": finding.severity.value,
                        "action": action.description, "round": action.round,
                        **({"sent back because": comment} if comment else {})},
               actor=actor)
    if action.step_id != step.id:
        action.step_id = step.id
        db.add(action)
        db.flush()
    return step


# --- the lifecycle: each answer applied once, right after the gateway records it or by the sweep's catch-up ---

class NoVerifier(RuntimeError):
    """Nobody can verify the action: no verifier named, nobody with a verifier role but its owner."""


def _verifier(db: Session, finding: Finding, action: CorrectiveAction) -> Person:
    """The finding's verifier; else the person holding a verifier role. Never the action's owner (four eyes)."""
    candidates = [db.get(Person, finding.verifier_id) if finding.verifier_id else None]
    candidates += [person_with_role(db, role) for role in VERIFIER_ROLES]
    for candidate in candidates:
        if candidate is not None and candidate.id != action.owner_id:
            return candidate
    raise NoVerifier(f"corrective action {action.id}: no verifier other than its owner "
                     f"(set the finding's verifier or give someone the role {VERIFIER_ROLES[0]!r})")


def _state(action: CorrectiveAction) -> dict[str, Any]:
    return {"status": action.status.value, "round": action.round, "step_id": action.step_id,
            "verify_step_id": action.verify_step_id}


def _message_context(db: Session, finding: Finding, action: CorrectiveAction) -> dict[str, Any]:
    return {"finding": {"description": finding.description, "severity": finding.severity.value},
            "action": {"description": action.description, "due_at": action.due_at, "round": action.round,
                       "done_note": action.done_note,
                       "evidence": action.evidence_url or action.evidence_filename or "",
                       "evidence_sha256": action.evidence_sha256 or "",
                       "comment": action.verification_comment},
            "owner": get_person(db, action.owner_id).name}


def apply_answer(db: Session, step: HumanStep) -> bool:
    """Move a corrective action on by its answered step (done → verifier asked; effective → verified, the
    finding closed when all its actions are; not effective → sent back for a new round). False if the step is
    not a live step of an action's lifecycle, or its answer was applied already."""
    if step.subject_type != SUBJECT or step.form not in (DONE_FORM, VERIFY_FORM):
        return False
    action = db.get(CorrectiveAction, step.subject_id)
    if action is None:
        return False
    finding = db.get(Finding, action.finding_id)
    assert finding is not None
    by = get_person(db, step.answered_by_id or step.person_id)
    if step.form == DONE_FORM:
        done = answer_of(step, ActionDone)
        return done is not None and _done(db, finding, action, step, done, by)
    verdict = answer_of(step, ActionVerification)
    if verdict is None:
        return False
    if verdict.effective == "yes":
        return _verified(db, finding, action, step, verdict, by)
    return _sent_back(db, finding, action, step, verdict, by)


def _done(db: Session, finding: Finding, action: CorrectiveAction, step: HumanStep, done: ActionDone,
          by: Person) -> bool:
    before = _state(action)
    file = done.evidence_file
    if not update_once(db, CorrectiveAction, action.id or 0,
                       where=[col(CorrectiveAction.step_id) == step.id,
                              col(CorrectiveAction.status).in_([ActionStatus.open, ActionStatus.reopened])],
                       values={"status": ActionStatus.done, "done_note": done.what_was_done.strip(),
                               "evidence_url": str(done.evidence_url) if done.evidence_url else None,
                               "evidence_filename": file.filename if file else None,
                               "evidence_sha256": file.sha256 if file else None,
                               "evidence_path": file.stored_path if file else None,
                               "done_at": step.answered_at or utcnow()}):
        return False
    verifier = _verifier(db, finding, action)
    due = working_days_from_now(VERIFY_WORKING_DAYS)
    verify = ask(db, key=f"corrective-action-{action.id}-round-{action.round}-verify", person_id=verifier.id or 0,
                 form=VERIFY_FORM, title=f"Verify: {action.description}"[:200], subject_type=SUBJECT,
                 subject_id=action.id or 0, due_at=due, expires_at=due + STEP_LIFETIME,
                 details={"finding": finding.description, "action": action.description,
                          "what was done": action.done_note,
                          "evidence": action.evidence_url or action.evidence_filename or "none given",
                          "round": action.round},
                 actor=by.email)
    action.verify_step_id = verify.id
    db.add(action)
    db.flush()
    notify.enqueue(db, key=f"step-{verify.id}-verification", recipient_id=verify.person_id,
                   template="action_verification",
                   context={**_message_context(db, finding, action), "step_id": verify.id, "due_at": verify.due_at,
                            "recipient": notify.recipient(get_person(db, verify.person_id))})
    trail.record(db, actor=by.email, action="action.done", entity_type="corrective_action",
                 entity_id=action.id or 0,
                 data={"before": before, "after": _state(action), "done_note": action.done_note,
                       "evidence_url": action.evidence_url, "evidence_sha256": action.evidence_sha256,
                       "verifier": get_person(db, verify.person_id).email})
    return True


def _verified(db: Session, finding: Finding, action: CorrectiveAction, step: HumanStep,
              verdict: ActionVerification, by: Person) -> bool:
    before = _state(action)
    if not update_once(db, CorrectiveAction, action.id or 0,
                       where=[col(CorrectiveAction.verify_step_id) == step.id,
                              col(CorrectiveAction.status) == ActionStatus.done],
                       values={"status": ActionStatus.verified, "verified_by_id": by.id,
                               "verified_at": step.answered_at or utcnow(), "verification_comment": verdict.comment}):
        return False
    trail.record(db, actor=by.email, action="action.verified", entity_type="corrective_action",
                 entity_id=action.id or 0, data={"before": before, "after": _state(action),
                                                 "comment": verdict.comment})
    _close_if_verified(db, finding, by)
    return True


def _close_if_verified(db: Session, finding: Finding, by: Person) -> None:
    unverified = db.exec(select(CorrectiveAction.id).where(CorrectiveAction.finding_id == finding.id,
                                                           CorrectiveAction.status != ActionStatus.verified)).first()
    if unverified is not None:
        return
    now = utcnow()
    if not update_once(db, Finding, finding.id or 0, where=[col(Finding.status) == FindingStatus.open],
                       values={"status": FindingStatus.closed, "closed_at": now}):
        return
    trail.record(db, actor=by.email, action="finding.closed", entity_type="finding", entity_id=finding.id or 0,
                 data={"before": {"status": FindingStatus.open.value},
                       "after": {"status": FindingStatus.closed.value, "closed_at": now}})


def _sent_back(db: Session, finding: Finding, action: CorrectiveAction, step: HumanStep,
               verdict: ActionVerification, by: Person) -> bool:
    before = _state(action)
    if not update_once(db, CorrectiveAction, action.id or 0,
                       where=[col(CorrectiveAction.verify_step_id) == step.id,
                              col(CorrectiveAction.status) == ActionStatus.done],
                       values={"status": ActionStatus.reopened, "round": col(CorrectiveAction.round) + 1,
                               "verification_comment": verdict.comment.strip(), "verified_by_id": None,
                               "verified_at": None}):
        return False
    # A new round: the owner has the verifier's comment and a fresh window as long as the first one was.
    window = max(action.due_at - action.created_at, timedelta(days=1))
    action.due_at = utcnow() + window
    db.add(action)
    db.flush()
    again = ask_owner(db, action, finding, actor=by.email, comment=action.verification_comment)
    notify.enqueue(db, key=f"step-{again.id}-sent-back", recipient_id=again.person_id, template="action_sent_back",
                   context={**_message_context(db, finding, action), "step_id": again.id, "due_at": again.due_at,
                            "verifier": by.name, "recipient": notify.recipient(get_person(db, again.person_id))})
    trail.record(db, actor=by.email, action="action.sent_back", entity_type="corrective_action",
                 entity_id=action.id or 0, data={"before": before, "after": _state(action),
                                                 "comment": action.verification_comment,
                                                 "due_at": action.due_at.isoformat()})
    return True


def unapplied_statement() -> CompoundSelect:
    """The answered steps whose action has not moved on yet: the owner's (action open or reopened) and the
    verifier's (action done). Read from the few unfinished actions (an index on their status), each step by its
    key, so the sweep's catch-up costs the same with a million answered steps behind it."""
    owner = (select(col(HumanStep.id)).join(CorrectiveAction, col(CorrectiveAction.step_id) == HumanStep.id)
             .where(col(CorrectiveAction.status).in_([ActionStatus.open, ActionStatus.reopened]),
                    col(HumanStep.status) == StepStatus.answered))
    verifier = (select(col(HumanStep.id)).join(CorrectiveAction, col(CorrectiveAction.verify_step_id) == HumanStep.id)
                .where(col(CorrectiveAction.status) == ActionStatus.done, col(HumanStep.status) == StepStatus.answered))
    return union_all(owner, verifier)


def unasked_statement() -> SelectOfScalar[Any]:
    """Open actions whose owner has no step: made before actions had a lifecycle (migrated), or by hand."""
    return select(CorrectiveAction.id).where(col(CorrectiveAction.status) == ActionStatus.open,
                                             col(CorrectiveAction.step_id).is_(None))


def ask_unasked() -> list[int]:
    """Ask the owner of every open action nobody asked (their link in an action_request message; the sweep
    reminds and escalates from there on); the ids of the steps asked."""
    with session() as db:
        owed = [action_id for action_id in db.exec(unasked_statement()) if action_id is not None]
    asked = []
    for action_id in owed:
        try:
            with unit() as db:
                action = db.get(CorrectiveAction, action_id)
                if action is None or action.step_id is not None or action.status != ActionStatus.open:
                    continue
                finding = db.get(Finding, action.finding_id)
                assert finding is not None
                step = ask_owner(db, action, finding, actor=ACTOR)
                notify.enqueue(db, key=f"step-{step.id}-action-request", recipient_id=step.person_id,
                               template="action_request",
                               context={"recipient": notify.recipient(get_person(db, step.person_id)),
                                        "actions": [{"description": action.description, "step_id": step.id,
                                                     "finding": finding.description, "due_at": action.due_at,
                                                     "severity": finding.severity.value}]})
                asked.append(step.id or 0)
        except Exception as error:  # an owner who cannot be asked (inactive, no delegate) must not stop the rest
            log.error("corrective action %s: its owner could not be asked: %r", action_id, error)
    return asked


def unapplied(db: Session) -> list[int]:
    """The answered action steps whose answer has not moved their action on yet (unapplied_statement)."""
    return [row[0] for row in db.execute(unapplied_statement())]


APPLIER = Applier(SUBJECT, apply_answer, unapplied)
"""The lifecycle on the engine's answer appliers (engine.appliers): applied by the gateway, caught up by the sweep."""
