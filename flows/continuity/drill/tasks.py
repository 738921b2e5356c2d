"""The drill's tasks: open it, alert everyone, keep it while its window is open, close it, report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import deployment
from sqlalchemy import update
from sqlmodel import Session, col, select

from engine import notify, runs
from engine.deadlines import next_due, working_days_from_now
from engine.human_steps import ask, expire
from engine.once import insert_once
from engine.reports import save_report
from engine.settings import get_settings
from engine.sweep import SweepReport, escalate_overdue
from engine.templates import in_sentence, render_page
from flows.continuity.drill.forms import DrillRecovery
from flows.continuity.drill.rules import (
    ACTION_WORKING_DAYS,
    Acknowledgement,
    DrillFigures,
    RecoveryReport,
    figures,
    findings,
)
from registry import (
    AckStatus,
    ContinuityPlan,
    CorrectiveAction,
    Drill,
    DrillMeasure,
    DrillParticipant,
    DrillProgram,
    DrillStatus,
    Facility,
    Finding,
    HumanStep,
    Person,
    RosterEntry,
    RosterRole,
    StepStatus,
    session,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import get_person, names_by_id, person_with_role

if TYPE_CHECKING:
    from flows.continuity.drill.flow import DrillParameters

ACTOR = "emergency-drill"
TEMPLATES = "continuity/drill"
DRILL_DEPLOYMENT = "emergency-drill/emergency-drill"


@dataclass(frozen=True)
class AfterAction:
    """What a closed drill came to, for the run's outcome."""

    facility: str
    kind: str
    status: str
    figures: DrillFigures
    findings: int
    report: str


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


def _drill_context(db: Session, drill: Drill) -> dict[str, Any]:
    facility = db.get(Facility, drill.facility_id)
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    assert facility is not None
    return {"drill": {"id": drill.id, "title": drill.title, "kind": drill.kind, "started_at": drill.started_at,
                      "escalate_at": drill.escalate_at, "closes_at": drill.closes_at,
                      "unscheduled": drill.unscheduled, "scheduled_for": drill.scheduled_for},
            "facility": {"code": facility.code, "name": facility.name, "address": facility.address},
            "plan": {"code": plan.code, "name": plan.name, "rto_minutes": plan.rto_minutes,
                     "rpo_minutes": plan.rpo_minutes} if plan else None}


@task
def preview_alert(params: DrillParameters) -> int:
    """Render the alert as each participant would receive it; nothing is written or sent."""
    assert params.facility is not None
    with session() as db:
        facility = _facility(db, params.facility)
        program = _program(db, facility, params.kind)
        roster = _roster(db, facility)
        context = {**_drill_context(db, _new_drill(params, facility, program, key="preview", run_id=None)),
                   "step_id": 0}
        parts = [notify.preview_for(person, f"{TEMPLATES}/started", {**context, "area": entry.area})
                 for entry, person in roster[:5]]
    more = f"\n… and {len(roster) - 5} more participants." if len(roster) > 5 else ""
    create_markdown_artifact("\n".join(parts) + more or "The facility's roster is empty.",
                             description=f"Preview of the {params.kind} alert at {params.facility}")
    return len(roster)


def _occasion_time(occasion: str | None) -> datetime | None:
    """The scheduler's occasion as a moment; a hand-given occasion that is not one (a re-run's key) is None."""
    try:
        return as_utc(datetime.fromisoformat(occasion)) if occasion else None
    except ValueError:
        return None


def _new_drill(params: DrillParameters, facility: Facility, program: DrillProgram | None, *, key: str,
               run_id: str | None) -> Drill:
    """The drill `params` describe, starting now, not yet saved: its windows, plan and measure from the
    facility's programme of this kind unless the parameters say otherwise."""
    window = timedelta(minutes=params.window_minutes or (program.window_minutes if program else 20))
    escalate = timedelta(minutes=params.escalate_after_minutes or (program.escalate_after_minutes if program else 5))
    measure = params.measure or (program.measure if program else DrillMeasure.headcount)
    now = utcnow()
    return Drill(key=key, program_id=program.id if program else None, facility_id=facility.id or 0,
                 plan_id=program.plan_id if program else None, kind=params.kind,
                 title=program.title if program else params.kind.replace("_", " ").capitalize(),
                 scheduled_for=_occasion_time(params.occasion), measure=DrillMeasure(measure), started_at=now,
                 escalate_at=now + min(escalate, window), closes_at=now + window, flow_run_id=run_id)


@task
def open_drill(params: DrillParameters) -> int:
    """The drill for this occasion, created once with one acknowledgement step per person on the roster.

    A scheduled drill is keyed by its occasion, an unscheduled one by the run that started it (a take-over run
    carries its origin), so a re-run or a take-over of either carries on with the same drill.
    """
    assert params.facility is not None
    run_id = runs.current_run_id()
    key = f"{params.facility}-{params.kind}-{params.occasion or runs.origin_run_id() or utcnow().isoformat()}"
    with session() as db:

        def existing() -> Drill | None:
            return db.exec(select(Drill).where(Drill.key == key)).first()

        if (found := existing()) is not None:
            return found.id or 0
        facility = _facility(db, params.facility)
        program = _program(db, facility, params.kind)
        roster = _roster(db, facility)
        if not roster:
            raise ValueError(f"facility {facility.code} has no active people on its roster: nobody to drill")
        drill, created = insert_once(db, _new_drill(params, facility, program, key=key, run_id=run_id), existing)
        if not created:  # another run opened it at the same moment
            return drill.id or 0
        wardens = [person.id or 0 for entry, person in roster if entry.role == RosterRole.warden]
        for entry, person in roster:
            step = ask(db, key=f"drill-{drill.id}-person-{person.id}", person_id=person.id or 0, form="drill_ack",
                       title=f"{drill.title} at {facility.name}: are you accounted for?",
                       subject_type="drill", subject_id=drill.id or 0, due_at=drill.escalate_at,
                       expires_at=drill.closes_at, actor=ACTOR,
                       details={"facility": facility.name, "area": entry.area or "—",
                                "drill": "unscheduled" if drill.unscheduled else "scheduled"})
            step.escalate_to = [w for w in wardens if w != person.id]
            db.add(step)
            db.add(DrillParticipant(drill_id=drill.id or 0, person_id=person.id or 0, role=entry.role,
                                    area=entry.area, step_id=step.id))
        db.flush()
        if drill.measure == DrillMeasure.recovery:
            lead = _responsible(db, drill, "plan_owner")
            report = ask(db, key=f"drill-{drill.id}-recovery", person_id=lead, form="drill_recovery",
                         title=f"{drill.title} at {facility.name}: when was the service restored?",
                         subject_type="drill", subject_id=drill.id or 0, due_at=drill.closes_at, actor=ACTOR,
                         details={"facility": facility.name, "drill": drill.title})
            drill.recovery_step_id = report.id
            db.add(drill)
        trail.record(db, actor=ACTOR, action="drill.started", entity_type="drill", entity_id=drill.id or 0,
                     data={"facility": facility.code, "kind": drill.kind, "participants": len(roster),
                           "unscheduled": drill.unscheduled, "measure": drill.measure.value,
                           "closes_at": drill.closes_at.isoformat()})
        return drill.id or 0


@task
def alert_participants(drill_id: int) -> int:
    """Everyone on the roster gets their own acknowledgement link, all at once; how many were sent."""
    with session() as db:
        drill = db.get(Drill, drill_id)
        assert drill is not None
        context = _drill_context(db, drill)
        ids: list[int] = []
        for participant, person in _acknowledgements(db, drill_id):
            rows = notify.enqueue(db, key=f"drill-{drill_id}-alert-{person.id}", recipient_id=person.id or 0,
                                  template=f"{TEMPLATES}/started",
                                  context={**context, "recipient": notify.recipient(person),
                                           "step_id": participant.step_id, "area": participant.area})
            ids += [row.id for row in rows if row.id is not None]
        if drill.recovery_step_id is not None:
            step = db.get(HumanStep, drill.recovery_step_id)
            assert step is not None
            lead = get_person(db, step.person_id)
            rows = notify.enqueue(db, key=f"drill-{drill_id}-recovery-request", recipient_id=step.person_id,
                                  template=f"{TEMPLATES}/recovery_request",
                                  context={**context, "recipient": notify.recipient(lead), "step_id": step.id})
            ids += [row.id for row in rows if row.id is not None]
    return len(notify.deliver_due(ids=ids).sent)


def _take_answers(db: Session, drill: Drill) -> list[DrillParticipant]:
    """Copy new answers onto the participants; those who just asked for assistance."""
    needing: list[DrillParticipant] = []
    rows = db.exec(select(DrillParticipant, HumanStep).join(HumanStep, col(HumanStep.id) == DrillParticipant.step_id)
                   .where(DrillParticipant.drill_id == drill.id, DrillParticipant.status == AckStatus.missing,
                          HumanStep.status == StepStatus.answered))
    for participant, step in rows:
        answer = step.answer or {}
        participant.status = AckStatus(answer.get("status", "accounted"))
        participant.location = str(answer.get("location", ""))
        participant.acknowledged_at = step.answered_at
        participant.answered_by_id = step.answered_by_id
        if step.answered_at is not None:
            participant.seconds_to_account = (as_utc(step.answered_at) - as_utc(drill.started_at)).total_seconds()
        db.add(participant)
        if participant.status == AckStatus.needs_assistance:
            needing.append(participant)
    return needing


def _alert_wardens(db: Session, drill: Drill, needing: list[DrillParticipant]) -> list[int]:
    if not needing:
        return []
    wardens = [p.person_id for p in db.exec(select(DrillParticipant).where(
        DrillParticipant.drill_id == drill.id, DrillParticipant.role == RosterRole.warden))]
    context = _drill_context(db, drill)
    ids: list[int] = []
    for participant in needing:
        person = db.get(Person, participant.person_id)
        assert person is not None
        item = {"name": person.name, "area": participant.area, "location": participant.location,
                "acknowledged_at": participant.acknowledged_at}
        ids += notify.digest(db, key=f"drill-{drill.id}-assist-{person.id}", template=f"{TEMPLATES}/assistance",
                             items={w: [item] for w in wardens if w != person.id}, context=context,
                             items_as="people")
        participant.assistance_alerted_at = utcnow()
        db.add(participant)
    return ids


@task
def watch(drill_id: int) -> dict[str, int]:
    """Keep the drill while its window is open: take answers as they come, alert the wardens at once to anyone
    needing assistance, escalate the still missing at the set time. Ends when everyone has answered (and, in a
    continuity exercise, the recovery is reported) or the window closes."""
    poll = get_settings().drill_poll_seconds
    alerted = escalated = 0
    while True:
        now = utcnow()
        with session() as db:
            drill = db.get(Drill, drill_id)
            assert drill is not None
            if drill.status != DrillStatus.running:
                break
            needing = _take_answers(db, drill)
            ids = _alert_wardens(db, drill, needing)
            missing = [(p.id, p.step_id) for p in db.exec(select(DrillParticipant).where(
                DrillParticipant.drill_id == drill_id, DrillParticipant.status == AckStatus.missing))]
            escalate_at, closes_at = as_utc(drill.escalate_at), as_utc(drill.closes_at)
            report_step = db.get(HumanStep, drill.recovery_step_id) if drill.recovery_step_id else None
            awaiting_report = report_step is not None and report_step.status == StepStatus.pending
        notify.deliver_due(ids=ids)
        alerted += len(needing)
        if (not missing and not awaiting_report) or now >= closes_at:
            break
        if now >= escalate_at:
            report = SweepReport()
            escalate_overdue(now, report, step_ids=[step_id for _, step_id in missing if step_id])
            if report.escalated:
                escalated += len(report.escalated)
                with session() as db:
                    db.execute(update(DrillParticipant).where(
                        col(DrillParticipant.id).in_([pid for pid, _ in missing]),
                        col(DrillParticipant.escalated_at).is_(None)).values(escalated_at=now)
                        .execution_options(synchronize_session=False))
                notify.deliver_due(ids=report.queued)
        time.sleep(max(0.05, min(poll, (closes_at - utcnow()).total_seconds())))
    return {"assistance_alerts": alerted, "escalated": escalated}


def _acknowledgements(db: Session, drill_id: int) -> list[tuple[DrillParticipant, Person]]:
    rows = db.exec(select(DrillParticipant, Person).join(Person, col(Person.id) == DrillParticipant.person_id)
                   .where(DrillParticipant.drill_id == drill_id).order_by(col(DrillParticipant.area),
                                                                          col(Person.name)))
    return [(participant, person) for participant, person in rows]


def _figures(db: Session, drill: Drill) -> DrillFigures:
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    acks = [Acknowledgement(name=person.name, area=p.area, status=p.status.value, seconds=p.seconds_to_account,
                            location=p.location) for p, person in _acknowledgements(db, drill.id or 0)]
    return figures(acks, plan.rto_minutes if plan else None, measure=drill.measure.value,
                   report=_recovery_report(db, drill), rpo_minutes=plan.rpo_minutes if plan else None)


def _recovery_report(db: Session, drill: Drill) -> RecoveryReport | None:
    """The exercise lead's answer, if a continuity exercise's recovery was reported in time."""
    step = db.get(HumanStep, drill.recovery_step_id) if drill.recovery_step_id else None
    if step is None or step.status != StepStatus.answered or not step.answer:
        return None
    answer = DrillRecovery.model_validate(step.answer)
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
    """Close the window: the unanswered are missing, figures and findings are recorded once, corrective
    actions are assigned, the plan's last-tested date moves, and the after-action report is written and sent."""
    with session() as db:
        drill = db.get(Drill, drill_id)
        assert drill is not None
        for step in db.exec(select(HumanStep).where(HumanStep.subject_type == "drill", HumanStep.subject_id == drill_id,
                                                    HumanStep.status == StepStatus.pending)):
            expire(db, step=step, actor=ACTOR)
        _take_answers(db, drill)
        db.flush()
        result = _figures(db, drill)
        now = utcnow()
        claimed = db.execute(update(Drill).where(col(Drill.id) == drill_id, col(Drill.status) == DrillStatus.running)
                             .values(status=DrillStatus.closed, closed_at=now, accounted=result.accounted,
                                     total=result.total, median_seconds=result.median_seconds,
                                     p90_seconds=result.p90_seconds, recovery_minutes=result.recovery_minutes,
                                     data_loss_minutes=result.data_loss_minutes)
                             .execution_options(synchronize_session=False))
        ids: list[int] = []
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            db.refresh(drill)
            ids = _record_findings(db, drill, result)
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
    notify.deliver_due(ids=ids)
    return drill_id


def _record_findings(db: Session, drill: Drill, result: DrillFigures) -> list[int]:
    actions: dict[int, list[dict[str, Any]]] = {}
    for found in findings(result, kind_title=in_sentence(drill.title)):
        finding = Finding(drill_id=drill.id, severity=found.severity, description=found.description)
        db.add(finding)
        db.flush()
        owner_id = _responsible(db, drill, found.owner)
        due = working_days_from_now(ACTION_WORKING_DAYS[found.severity])
        action = CorrectiveAction(finding_id=finding.id or 0, owner_id=owner_id, description=found.action, due_at=due)
        db.add(action)
        db.flush()
        trail.record(db, actor=ACTOR, action="finding.raised", entity_type="finding", entity_id=finding.id or 0,
                     data={"drill": drill.id, "kind": found.key, "severity": found.severity.value,
                           "action_id": action.id, "action_owner": owner_id, "action_due_at": due.isoformat()})
        actions.setdefault(owner_id, []).append({"severity": found.severity.value, "description": found.description,
                                                 "action": found.action, "due_at": due})
    return notify.digest(db, key=f"drill-{drill.id}-actions", template=f"{TEMPLATES}/actions", items=actions,
                         context=_drill_context(db, drill), items_as="actions")


def _report_context(db: Session, drill: Drill) -> tuple[dict[str, Any], DrillFigures]:
    """What the after-action report and its message show, and the figures behind them."""
    result = _figures(db, drill)
    acknowledged = _acknowledgements(db, drill.id or 0)
    actions = list(db.exec(select(Finding, CorrectiveAction)
                           .join(CorrectiveAction, col(CorrectiveAction.finding_id) == Finding.id)
                           .where(Finding.drill_id == drill.id).order_by(col(Finding.id))))
    names = names_by_id(db, [p.answered_by_id for p, _ in acknowledged] + [a.owner_id for _, a in actions])
    rows = [{"name": person.name, "area": participant.area, "role": participant.role.value,
             "status": participant.status.value, "location": participant.location,
             "seconds": participant.seconds_to_account,
             "answered_by": names.get(participant.answered_by_id or 0, "")
             if participant.answered_by_id not in (None, person.id) else "",
             "escalated": participant.escalated_at is not None}
            for participant, person in acknowledged]
    found = [{"severity": finding.severity.value, "description": finding.description, "action": action.description,
              "owner": names.get(action.owner_id, "?"), "due_at": action.due_at} for finding, action in actions]
    summary = {"accounted": result.accounted, "total": result.total, "percent": result.headcount_percent,
               "median_seconds": result.median_seconds, "p90_seconds": result.p90_seconds,
               "recovery_minutes": result.recovery_minutes, "rto_minutes": result.rto_minutes,
               "rto_met": result.rto_met, "measure": result.measure, "reported": result.reported,
               "reported_by": result.reported_by, "recovery_note": result.recovery_note,
               "data_loss_minutes": result.data_loss_minutes,
               "rpo_minutes": result.rpo_minutes, "rpo_met": result.rpo_met,
               "missing": [{"name": a.name, "area": a.area} for a in result.missing],
               "needs_assistance": [{"name": a.name, "location": a.location} for a in result.needs_assistance]}
    return {**_drill_context(db, drill), "summary": summary, "rows": rows, "findings": found,
            "closed_at": drill.closed_at, "generated_at": utcnow()}, result


@task
def build_after_action(drill_id: int) -> AfterAction:
    """The after-action report (HTML on disk, sent to the wardens and the plan owner) and its artifacts."""
    with session() as db:
        drill = db.get(Drill, drill_id)
        facility = db.get(Facility, drill.facility_id) if drill else None
        assert drill is not None and facility is not None
        context, result = _report_context(db, drill)
        report = save_report(f"drill-{drill_id}-{facility.code}-{drill.kind}.html", f"{TEMPLATES}/report.html",
                             context)
        first_time = drill.report_sha256 is None
        drill.report_path, drill.report_sha256 = str(report.path), report.sha256
        db.add(drill)
        ids: list[int] = []
        if first_time:
            trail.record(db, actor=ACTOR, action="drill.report_built", entity_type="drill", entity_id=drill_id,
                         data={"sha256": report.sha256, "path": str(report.path)})
            readers = {p.person_id for p in db.exec(select(DrillParticipant).where(
                DrillParticipant.drill_id == drill_id, DrillParticipant.role == RosterRole.warden))}
            plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
            readers |= {plan.owner_id} if plan is not None and plan.owner_id else set()
            for reader_id in sorted(readers):
                reader = db.get(Person, reader_id)
                assert reader is not None
                rows = notify.enqueue(db, key=f"drill-{drill_id}-after-action-{reader_id}", recipient_id=reader_id,
                                      template=f"{TEMPLATES}/after_action",
                                      context={**context, "recipient": notify.recipient(reader)})
                ids += [row.id for row in rows if row.id is not None]
        outcome = AfterAction(facility=facility.code, kind=drill.kind, status=drill.status.value, figures=result,
                              findings=len(context["findings"]), report=str(report.path))
        rows = context["rows"]
    notify.deliver_due(ids=ids)
    create_table_artifact([{**row, "seconds": round(row["seconds"], 1) if row["seconds"] is not None else None}
                           for row in rows], key=f"drill-{facility.code.lower()}-{drill.kind.replace('_', '-')}",
                          description=f"{drill.title} at {facility.name}: who acknowledged, and when")
    create_markdown_artifact(render_page(f"{TEMPLATES}/report.md", {**context, "report": outcome.report,
                                                                      "findings_count": outcome.findings}),
                             key="drill-after-action", description=f"After-action summary, drill {drill_id}")
    return outcome


@task
def start_due_drills(drill_deployment: str = DRILL_DEPLOYMENT) -> list[str]:
    """Start one emergency-drill run for every programme whose cadence has come round; what was started.

    A programme never run before starts counting now, so installing one does not set off a drill at once.
    Occurrences missed while nothing was running are not made up: the next run is the next occurrence.
    """
    settings = get_settings()
    now = utcnow()
    started: list[str] = []
    with session() as db:
        programs = list(db.exec(select(DrillProgram, Facility)
                                .join(Facility, col(Facility.id) == DrillProgram.facility_id)
                                .where(col(DrillProgram.active).is_(True), col(Facility.active).is_(True))
                                .order_by(col(DrillProgram.id))))
        due: list[tuple[int, str, datetime, str, datetime]] = []
        for program, facility in programs:
            if program.last_run_at is None:
                program.last_run_at = now
                db.add(program)
                continue
            occasion = next_due(program.cadence, as_utc(program.last_run_at), settings.timezone)
            if occasion <= now:
                due.append((program.id or 0, program.kind, program.last_run_at, facility.code, occasion))
    for program_id, kind, last_run_at, code, occasion in due:
        # Started before it is claimed: a crash or a refused API call in between leaves the occasion due, and
        # the run's idempotency key makes the next look find the same run instead of starting a second one.
        if deployment.get_id():
            run = runs.start(drill_deployment,
                             {"params": {"facility": code, "kind": kind, "occasion": occasion.isoformat()}},
                             idempotency_key=f"drill-{program_id}-{occasion.isoformat()}",
                             run_name=f"{kind} {code} {occasion:%Y-%m-%d}")
            note = f"{code} {kind}: flow run {run.id}"
        else:
            note = f"{code} {kind} due {occasion.isoformat()}: not running from a deployment, start it with a facility"
        with session() as db:
            claimed = db.execute(update(DrillProgram).where(
                col(DrillProgram.id) == program_id, col(DrillProgram.last_run_at) == last_run_at)
                .values(last_run_at=now).execution_options(synchronize_session=False))
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            started.append(note)
    return started
