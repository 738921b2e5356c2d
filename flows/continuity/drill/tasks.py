"""The drill's tasks, each one unit of work: load, call the rules, store, queue what it tells people."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prefect import task
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from engine import runs
from engine.answers import answer_of
from engine.deadlines import working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.human_steps import Ask, expire
from engine.occasions import claim_phase, close, open_occasion
from engine.once import insert_ignoring_conflicts, insert_once
from engine.settings import get_settings
from engine.sweep import SweepReport, escalate
from engine.templates import in_sentence
from engine.work import Digest, Request, delivering_meanwhile, preview, request, request_many, unit
from flows.continuity.drill.forms import DrillAck, DrillRecovery
from flows.continuity.drill.rules import Acknowledgement, DrillFigures, RecoveryReport, figures, findings
from registry import (
    AckStatus,
    ContinuityPlan,
    Criticality,
    Drill,
    DrillMeasure,
    DrillParticipant,
    DrillProgram,
    DrillStatus,
    Facility,
    HumanStep,
    Occasion,
    OccasionStatus,
    Person,
    RosterEntry,
    RosterRole,
    StepStatus,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import person_with_role

if TYPE_CHECKING:
    from flows.continuity.drill.flow import DrillParameters

ACTOR = "emergency-drill"
TEMPLATES = "continuity/drill"


@dataclass(frozen=True)
class Opened:
    drill_id: int
    participants: int


def _facility(db: Session, code: str) -> Facility:
    found = db.exec(select(Facility).where(Facility.code == code)).first()
    if found is None or not found.active:
        known = ", ".join(db.exec(select(Facility.code).where(col(Facility.active).is_(True)))) or "none"
        raise ValueError(f"facility {code!r} does not exist or is inactive (known: {known})")
    return found


def _program(db: Session, facility: Facility, kind: str) -> DrillProgram | None:
    return db.exec(select(DrillProgram).where(DrillProgram.facility_id == facility.id,
                                              DrillProgram.kind == kind)).first()


def _roster(db: Session, facility: Facility) -> list[tuple[RosterEntry, Person]]:
    rows = db.exec(select(RosterEntry, Person).join(Person, col(Person.id) == RosterEntry.person_id)
                   .where(RosterEntry.facility_id == facility.id, col(Person.active).is_(True))
                   .order_by(col(RosterEntry.area), col(Person.name)))
    return [(entry, person) for entry, person in rows]


def drill_context(db: Session, drill: Drill) -> dict[str, Any]:
    """What every message and page of the drill shows of it."""
    facility = db.get(Facility, drill.facility_id)
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    assert facility is not None
    return {"drill": {"id": drill.id, "title": drill.title, "kind": drill.kind, "started_at": drill.started_at,
                      "escalate_at": drill.escalate_at, "closes_at": drill.closes_at,
                      "unscheduled": drill.unscheduled, "scheduled_for": drill.scheduled_for},
            "facility": {"code": facility.code, "name": facility.name, "address": facility.address},
            "plan": {"code": plan.code, "name": plan.name, "rto_minutes": plan.rto_minutes,
                     "rpo_minutes": plan.rpo_minutes} if plan else None}


def _occasion_time(occasion: str | None) -> datetime | None:
    """The dispatcher's occasion as a moment; a hand-given occasion that is not one (a re-run's key) is None."""
    try:
        return as_utc(datetime.fromisoformat(occasion)) if occasion else None
    except ValueError:
        return None


def _new_drill(params: DrillParameters, facility: Facility, program: DrillProgram | None, *, key: str,
               run_id: str | None) -> Drill:
    """The drill `params` describe, starting now, not yet saved: its windows, plan and measure from the
    facility's programme of this kind unless the parameters say otherwise."""
    window = timedelta(minutes=params.window_minutes or (program.window_minutes if program else 20))
    escalate_after = timedelta(minutes=params.escalate_after_minutes
                               or (program.escalate_after_minutes if program else 5))
    measure = params.measure or (program.measure if program else DrillMeasure.headcount)
    now = utcnow()
    return Drill(key=key, program_id=program.id if program else None, facility_id=facility.id or 0,
                 plan_id=program.plan_id if program else None, kind=params.kind,
                 title=program.title if program else params.kind.replace("_", " ").capitalize(),
                 scheduled_for=_occasion_time(params.occasion), measure=DrillMeasure(measure), started_at=now,
                 escalate_at=now + min(escalate_after, window), closes_at=now + window, flow_run_id=run_id)


def _by_key(db: Session, key: str) -> Drill | None:
    return db.exec(select(Drill).where(Drill.key == key)).first()


def _participant_count(db: Session, drill_id: int) -> int:
    """How many people the drill asked, counted in the database rather than loaded."""
    return db.exec(select(func.count()).select_from(DrillParticipant)
                   .where(DrillParticipant.drill_id == drill_id)).one()


@task
def open_drill(params: DrillParameters) -> Opened:
    """The drill for this occasion, created once, with its occasion; everyone on the roster asked at once, each
    with an acknowledgement link of their own (and, in a continuity exercise, its lead for the recovery report).

    A scheduled drill is keyed by its occasion, an unscheduled one by the run that started it (a take-over run
    carries its origin), so a re-run or a take-over of either carries on with the same drill.

    The roster is asked a part at a time, each part its own unit of work whose alerts go out while the next part
    is asked (engine.work.delivering_meanwhile): the first alerts leave after a part's work, not the whole
    roster's. Until the last part is in, the occasion's phase says the drill is opening, so a run that died
    half-way is carried on by the next one: it asks those not yet asked, and nobody twice.
    """
    run_id = runs.current_run_id()
    key = f"{params.facility}-{params.kind}-{params.occasion or runs.origin_run_id() or utcnow().isoformat()}"
    with delivering_meanwhile():
        with unit() as db:
            if (found := _by_key(db, key)) is not None:
                occasion = db.get(Occasion, found.occasion_id) if found.occasion_id else None
                if occasion is None or occasion.phase != OPENING:
                    return Opened(found.id or 0, _participant_count(db, found.id or 0))
                drill = found
                facility = db.get(Facility, drill.facility_id)
                assert facility is not None
                roster = _roster(db, facility)
                asked = set(db.exec(select(DrillParticipant.person_id).where(DrillParticipant.drill_id == drill.id)))
                rest = [(entry, person) for entry, person in roster if person.id not in asked]
            else:
                facility = _facility(db, params.facility)
                roster = _roster(db, facility)
                if not roster:
                    raise ValueError(f"facility {facility.code} has no active people on its roster: nobody to drill")
                drill, created = insert_once(db, _new_drill(params, facility, _program(db, facility, params.kind),
                                                            key=key, run_id=run_id), lambda: _by_key(db, key))
                if not created:  # another run opened it at the same moment
                    return Opened(drill.id or 0, _participant_count(db, drill.id or 0))
                occasion, _ = open_occasion(db, process=ACTOR, key=key, title=f"{drill.title} at {facility.name}",
                                            period_start=drill.started_at, period_end=drill.closes_at,
                                            flow_run_id=run_id, status=OccasionStatus.collecting, phase=OPENING)
                drill.occasion_id = occasion.id
                db.add(drill)
                rest = roster
            context = drill_context(db, drill)
            wardens = [person.id or 0 for entry, person in roster if entry.role == RosterRole.warden]
            _ask_part(db, drill, facility, context, wardens, rest[:_PART])
        for start in range(_PART, len(rest), _PART):
            with unit() as db:
                _ask_part(db, drill, facility, context, wardens, rest[start:start + _PART])
        with unit() as db:
            stored = db.get(Drill, drill.id)
            assert stored is not None
            drill = stored
            if not claim_phase(db, occasion.id or 0, OPENING, ""):  # another run finished opening it
                return Opened(drill.id or 0, _participant_count(db, drill.id or 0))
            if drill.measure == DrillMeasure.recovery:
                report = request(db, key=f"drill-{drill.id}-recovery",
                                 person_id=_responsible(db, drill, "plan_owner"), form="drill_recovery",
                                 title=f"{drill.title} at {facility.name}: when was the service restored?",
                                 subject_type="drill", subject_id=drill.id or 0, due_at=drill.closes_at, actor=ACTOR,
                                 template=f"{TEMPLATES}/recovery_request", context=context,
                                 details={"facility": facility.name, "drill": drill.title})
                drill.recovery_step_id = report.id
                db.add(drill)
            participants = _participant_count(db, drill.id or 0)
            trail.record(db, actor=ACTOR, action="drill.started", entity_type="drill", entity_id=drill.id or 0,
                         data={"facility": facility.code, "kind": drill.kind, "participants": participants,
                               "unscheduled": drill.unscheduled, "measure": drill.measure.value,
                               "closes_at": drill.closes_at.isoformat(), "occasion_id": occasion.id})
            return Opened(drill.id or 0, participants)


OPENING = "opening"  # the occasion's phase while the roster is still being asked
_PART = 200  # people per unit of work while opening: the first alerts leave after this many are asked


def _ask_part(db: Session, drill: Drill, facility: Facility, context: dict[str, Any], wardens: list[int],
              part: list[tuple[RosterEntry, Person]]) -> None:
    """Ask and alert part of the roster, and make them participants, in a few statements
    (engine.work.request_many), not several round trips per person."""
    if not part:
        return
    title = f"{drill.title} at {facility.name}: are you accounted for?"
    steps = request_many(db, [
        Request(Ask(key=f"drill-{drill.id}-person-{person.id}", person_id=person.id or 0, form="drill_ack",
                    title=title, subject_type="drill", subject_id=drill.id or 0, due_at=drill.escalate_at,
                    expires_at=drill.closes_at, actor=ACTOR,
                    details={"participant": person.name, "facility": facility.name, "area": entry.area or "—",
                             "drill": "unscheduled" if drill.unscheduled else "scheduled"},
                    escalate_to=tuple(w for w in wardens if w != person.id)),
                template=f"{TEMPLATES}/started", context={**context, "area": entry.area})
        for entry, person in part])
    # A run carrying on after another may race it for the same people: the participant row is theirs then.
    table = DrillParticipant.__table__  # type: ignore[attr-defined]
    db.connection().execute(insert_ignoring_conflicts(db, table), [
        {"drill_id": drill.id or 0, "person_id": person.id or 0, "role": entry.role, "area": entry.area,
         "step_id": step.id, "status": AckStatus.missing, "location": ""}
        for (entry, person), step in zip(part, steps, strict=True)])


@task
def preview_drill(params: DrillParameters) -> int:
    """The drill opened for show: every alert it would send rendered into an artifact; nothing kept or sent.
    How many people it would alert."""
    with preview(f"Preview of the {params.kind} alert at {params.facility}"):
        return open_drill.fn(params).participants


def _take_answers(db: Session, drill: Drill) -> list[DrillParticipant]:
    """Copy new answers onto the participants; those who just asked for assistance."""
    needing: list[DrillParticipant] = []
    rows = db.exec(select(DrillParticipant, HumanStep).join(HumanStep, col(HumanStep.id) == DrillParticipant.step_id)
                   .where(DrillParticipant.drill_id == drill.id, DrillParticipant.status == AckStatus.missing,
                          HumanStep.status == StepStatus.answered))
    for participant, step in rows:
        answer = answer_of(step, DrillAck)
        assert answer is not None
        participant.status = AckStatus(answer.status)
        participant.location = answer.location
        participant.acknowledged_at = step.answered_at
        participant.answered_by_id = step.answered_by_id
        if step.answered_at is not None:
            participant.seconds_to_account = (as_utc(step.answered_at) - as_utc(drill.started_at)).total_seconds()
        db.add(participant)
        if participant.status == AckStatus.needs_assistance:
            needing.append(participant)
    return needing


def _alert_wardens(db: Session, drill: Drill, needing: list[DrillParticipant]) -> None:
    """Every warden hears at once of each person needing assistance (one message per person in need)."""
    if not needing:
        return
    wardens = [p.person_id for p in db.exec(select(DrillParticipant).where(
        DrillParticipant.drill_id == drill.id, DrillParticipant.role == RosterRole.warden))]
    context = drill_context(db, drill)
    people = {p.id: p for p in db.exec(select(Person).where(col(Person.id).in_([n.person_id for n in needing])))}
    for participant in needing:
        person = people[participant.person_id]
        alert = Digest(key=f"drill-{drill.id}-assist-{person.id}", template=f"{TEMPLATES}/assistance",
                       context=context, items_as="people")
        for warden in wardens:
            if warden != person.id:
                alert.add(warden, {"name": person.name, "area": participant.area, "location": participant.location,
                                   "acknowledged_at": participant.acknowledged_at})
        alert.queue(db)
        participant.assistance_alerted_at = utcnow()
        db.add(participant)


def _escalate_missing(drill_id: int, now: datetime, missing: list[tuple[int | None, int | None]]) -> int:
    """The still missing escalated to their wardens and managers, once whoever gets there first (the sweep or
    this run); how many were escalated now."""
    report = SweepReport()
    with unit() as db:
        escalate(db, now, report, step_ids=[step_id for _, step_id in missing if step_id])
        if report.escalated:
            db.execute(update(DrillParticipant).where(
                col(DrillParticipant.id).in_([pid for pid, _ in missing]),
                col(DrillParticipant.escalated_at).is_(None)).values(escalated_at=now)
                .execution_options(synchronize_session=False))
    return len(report.escalated)


@task
def watch(drill_id: int) -> dict[str, int]:
    """Keep the drill while its window is open: take answers as they come, alert the wardens at once to anyone
    needing assistance, escalate the still missing at the set time. Ends when everyone has answered (and, in a
    continuity exercise, the recovery is reported) or the window closes."""
    poll = get_settings().drill_poll_seconds
    alerted = escalated = 0
    while True:
        now = utcnow()
        with unit() as db:
            drill = db.get(Drill, drill_id)
            assert drill is not None
            if drill.status != DrillStatus.running:
                break
            needing = _take_answers(db, drill)
            _alert_wardens(db, drill, needing)
            missing = [(p.id, p.step_id) for p in db.exec(select(DrillParticipant).where(
                DrillParticipant.drill_id == drill_id, DrillParticipant.status == AckStatus.missing))]
            escalate_at, closes_at = as_utc(drill.escalate_at), as_utc(drill.closes_at)
            report_step = db.get(HumanStep, drill.recovery_step_id) if drill.recovery_step_id else None
            awaiting_report = report_step is not None and report_step.status == StepStatus.pending
        alerted += len(needing)
        if (not missing and not awaiting_report) or now >= closes_at:
            break
        if now >= escalate_at:
            escalated += _escalate_missing(drill_id, now, missing)
        time.sleep(max(0.05, min(poll, (closes_at - utcnow()).total_seconds())))
    return {"assistance_alerts": alerted, "escalated": escalated}


def acknowledgements(db: Session, drill_id: int) -> list[tuple[DrillParticipant, Person]]:
    rows = db.exec(select(DrillParticipant, Person).join(Person, col(Person.id) == DrillParticipant.person_id)
                   .where(DrillParticipant.drill_id == drill_id).order_by(col(DrillParticipant.area),
                                                                          col(Person.name)))
    return [(participant, person) for participant, person in rows]


def drill_figures(db: Session, drill: Drill) -> DrillFigures:
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    acks = [Acknowledgement(name=person.name, area=p.area, status=p.status.value, seconds=p.seconds_to_account,
                            location=p.location) for p, person in acknowledgements(db, drill.id or 0)]
    return figures(acks, plan.rto_minutes if plan else None, measure=drill.measure.value,
                   report=_recovery_report(db, drill), rpo_minutes=plan.rpo_minutes if plan else None)


def _recovery_report(db: Session, drill: Drill) -> RecoveryReport | None:
    """The exercise lead's answer, if a continuity exercise's recovery was reported in time."""
    step = db.get(HumanStep, drill.recovery_step_id) if drill.recovery_step_id else None
    answer = answer_of(step, DrillRecovery) if step is not None else None
    if step is None or answer is None:
        return None
    by = db.get(Person, step.answered_by_id) if step.answered_by_id else None
    return RecoveryReport(restored_after_minutes=answer.restored_after_minutes,
                          data_loss_minutes=answer.data_loss_minutes, reported_by=by.name if by else "",
                          note=answer.note)


def _responsible(db: Session, drill: Drill, owner: str) -> int:
    """Who owns a finding's corrective action: the first warden for the people findings, the plan owner for
    the plan's; whoever of the two exists otherwise, and the Director of Operations when neither does."""
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    warden = db.exec(select(DrillParticipant.person_id).where(
        DrillParticipant.drill_id == drill.id, DrillParticipant.role == RosterRole.warden)
        .order_by(col(DrillParticipant.id))).first()
    plan_owner = plan.owner_id if plan is not None else None
    for candidate in (warden, plan_owner) if owner == "warden" else (plan_owner, warden):
        if candidate is not None:
            return candidate
    director = person_with_role(db, "director")
    if director is None:
        raise ValueError("no warden, plan owner or person with role 'director' to own the drill's findings")
    return director.id or 0


@task
def close_drill(drill_id: int) -> int:
    """Close the window: the unanswered are missing, the occasion closes once (of two runs, one records the
    figures and raises the findings), each finding's corrective action is asked of its owner, and the plan's
    last-tested date moves."""
    with unit() as db:
        drill = db.get(Drill, drill_id)
        assert drill is not None
        for step in db.exec(select(HumanStep).where(HumanStep.subject_type == "drill", HumanStep.subject_id == drill_id,
                                                    HumanStep.status == StepStatus.pending)):
            expire(db, step=step, actor=ACTOR)
        _take_answers(db, drill)
        db.flush()
        occasion = db.get(Occasion, drill.occasion_id) if drill.occasion_id else None
        assert occasion is not None, f"drill {drill_id} has no occasion"
        if not close(db, occasion, actor=ACTOR):
            return drill_id
        result = drill_figures(db, drill)
        now = utcnow()
        drill.status, drill.closed_at = DrillStatus.closed, now
        drill.accounted, drill.total = result.accounted, result.total
        drill.median_seconds, drill.p90_seconds = result.median_seconds, result.p90_seconds
        drill.recovery_minutes, drill.data_loss_minutes = result.recovery_minutes, result.data_loss_minutes
        db.add(drill)
        _raise_findings(db, drill, result)
        if drill.plan_id:
            plan = db.get(ContinuityPlan, drill.plan_id)
            assert plan is not None
            plan.last_tested_at = now
            db.add(plan)
        trail.record(db, actor=ACTOR, action="drill.closed", entity_type="drill", entity_id=drill_id,
                     data={"accounted": result.accounted, "total": result.total,
                           "median_seconds": result.median_seconds, "p90_seconds": result.p90_seconds,
                           "recovery_minutes": result.recovery_minutes, "rto_met": result.rto_met,
                           "measure": result.measure, "data_loss_minutes": result.data_loss_minutes,
                           "rpo_met": result.rpo_met, "recovery_reported_by": result.reported_by or None,
                           "missing": [a.name for a in result.missing]})
    return drill_id


def _raise_findings(db: Session, drill: Drill, result: DrillFigures) -> None:
    """Each finding of the after-action review raised once (a re-run finds it raised), its corrective action
    asked of its owner; every owner told of theirs in one message, each action linking its step."""
    actions = Digest(key=f"drill-{drill.id}-actions", template=f"{TEMPLATES}/actions",
                     context=drill_context(db, drill), items_as="actions")
    for found in findings(result, kind_title=in_sentence(drill.title)):
        severity = Criticality(found.severity)
        raised = raise_finding(db, origin=Origin("drill", drill.id or 0), code=found.key, severity=severity,
                               description=found.description, actor=ACTOR, process=ACTOR,
                               occasion_id=drill.occasion_id,
                               action=ActionSpec(owner_id=_responsible(db, drill, found.owner),
                                                 description=found.action,
                                                 due_at=working_days_from_now(working_days_for(severity))))
        if raised.created and raised.action is not None and raised.step is not None:
            actions.add(raised.action.owner_id, {"severity": found.severity, "description": found.description,
                                                 "action": found.action, "due_at": raised.action.due_at,
                                                 "step_id": raised.step.id})
    actions.queue(db)
