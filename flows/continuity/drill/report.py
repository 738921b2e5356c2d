"""The after-action report: what a closed drill came to, on disk, on its occasion, and to its readers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlmodel import Session, col, select

from engine import notify
from engine.occasions import claim_phase, record_report
from engine.reports import save_report
from engine.templates import render_page
from engine.work import unit
from flows.continuity.drill.rules import DrillFigures
from flows.continuity.drill.tasks import ACTOR, TEMPLATES, acknowledgements, drill_context, drill_figures
from registry import (
    ContinuityPlan,
    CorrectiveAction,
    Drill,
    DrillParticipant,
    Facility,
    Finding,
    Occasion,
    Person,
    RosterRole,
    trail,
)
from registry.clock import utcnow
from registry.people import names_by_id

REPORTED = "reported"  # the occasion's phase once the report has gone to its readers


@dataclass(frozen=True)
class AfterAction:
    """What a closed drill came to, for the run's outcome."""

    facility: str
    kind: str
    status: str
    figures: DrillFigures
    findings: int
    report: str


def _report_context(db: Session, drill: Drill) -> tuple[dict[str, Any], DrillFigures]:
    """What the after-action report and its message show, and the figures behind them."""
    result = drill_figures(db, drill)
    acknowledged = acknowledgements(db, drill.id or 0)
    actions = list(db.exec(select(Finding, CorrectiveAction)
                           .join(CorrectiveAction, col(CorrectiveAction.finding_id) == Finding.id)
                           .where(Finding.origin_type == "drill", Finding.origin_id == drill.id)
                           .order_by(col(Finding.id))))
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
    return {**drill_context(db, drill), "summary": summary, "rows": rows, "findings": found,
            "closed_at": drill.closed_at, "generated_at": utcnow()}, result


def _readers(db: Session, drill: Drill) -> list[Person]:
    """The wardens and the plan's owner."""
    ids = {p.person_id for p in db.exec(select(DrillParticipant).where(
        DrillParticipant.drill_id == drill.id, DrillParticipant.role == RosterRole.warden))}
    plan = db.get(ContinuityPlan, drill.plan_id) if drill.plan_id else None
    ids |= {plan.owner_id} if plan is not None and plan.owner_id else set()
    return [person for person_id in sorted(ids) if (person := db.get(Person, person_id)) is not None]


@task
def build_after_action(drill_id: int) -> AfterAction:
    """The after-action report (HTML on disk, on the drill's occasion, sent once to the wardens and the plan
    owner) and its artifacts."""
    with unit() as db:
        drill = db.get(Drill, drill_id)
        facility = db.get(Facility, drill.facility_id) if drill else None
        occasion = db.get(Occasion, drill.occasion_id) if drill and drill.occasion_id else None
        assert drill is not None and facility is not None and occasion is not None
        context, result = _report_context(db, drill)
        saved = save_report(f"drill-{drill_id}-{facility.code}-{drill.kind}.html", f"{TEMPLATES}/report.html",
                            context)
        record_report(db, occasion, saved, actor=ACTOR)
        drill.report_path, drill.report_sha256 = str(saved.path), saved.sha256
        db.add(drill)
        before = occasion.phase
        if before != REPORTED and claim_phase(db, occasion.id or 0, before, REPORTED):
            trail.record(db, actor=ACTOR, action="drill.report_built", entity_type="drill", entity_id=drill_id,
                         data={"sha256": saved.sha256, "path": str(saved.path), "occasion_id": occasion.id})
            for reader in _readers(db, drill):
                notify.enqueue(db, key=f"drill-{drill_id}-after-action-{reader.id}", recipient_id=reader.id or 0,
                               template=f"{TEMPLATES}/after_action",
                               context={**context, "recipient": notify.recipient(reader)})
        done = AfterAction(facility=facility.code, kind=drill.kind, status=occasion.status.value, figures=result,
                           findings=len(context["findings"]), report=str(saved.path))
        title, name = drill.title, facility.name
    create_table_artifact([{**row, "seconds": round(row["seconds"], 1) if row["seconds"] is not None else None}
                           for row in context["rows"]],
                          key=f"drill-{done.facility.lower()}-{done.kind.replace('_', '-')}",
                          description=f"{title} at {name}: who acknowledged, and when")
    create_markdown_artifact(render_page(f"{TEMPLATES}/report.md", {**context, "report": done.report,
                                                                      "findings_count": done.findings}),
                             key="drill-after-action", description=f"After-action summary, drill {drill_id}")
    return done
