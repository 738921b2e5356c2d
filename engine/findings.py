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
back (a new round: the owner asked again, with the verifier's comment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from engine.human_steps import ask
from engine.once import insert_once
from registry import CorrectiveAction, Criticality, Finding, HumanStep, trail
from registry.clock import as_utc

SUBJECT = "corrective_action"  # the subject_type of every step of an action's lifecycle
DONE_FORM, VERIFY_FORM = "action_done", "action_verification"

# How many working days a corrective action gets, by the finding's severity: the one table every process uses.
ACTION_WORKING_DAYS = {Criticality.high: 10, Criticality.medium: 20, Criticality.low: 40}

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
               subject_id=action.id or 0, due_at=action.due_at, expires_at=action.due_at + STEP_LIFETIME,
               details={"finding": finding.description, "severity": finding.severity.value,
                        "action": action.description, "round": action.round,
                        **({"sent back because": comment} if comment else {})},
               actor=actor)
    if action.step_id != step.id:
        action.step_id = step.id
        db.add(action)
        db.flush()
    return step
