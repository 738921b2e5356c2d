"""Occasions: what a process opens and closes (an audit for a quarter, a drill, a review period), opened once.

    occasion, created = open_occasion(db, process="compliance-audit", key="ISO 27001 2026-Q3", title=..., ...)
    set_due(db, occasion, due)   # when its people must have answered, set once (or given to open_occasion)
    if claim_phase(db, occasion.id, "collecting", "reporting"):   # of two runs, one builds the report
        record_report(db, occasion, save_report(...))

A process's state lives on its occasion (status, phase, deadline, the opening run's parameters, report,
sign-off), never read back from the trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from engine.once import insert_once, update_once
from engine.reports import SavedReport
from registry import Occasion, OccasionStatus, trail
from registry.clock import as_utc, utcnow

ENDED = (OccasionStatus.closed, OccasionStatus.cancelled)


def find(db: Session, process: str, key: str) -> Occasion | None:
    return db.exec(select(Occasion).where(Occasion.process == process, Occasion.key == key)).first()


def open_occasion(db: Session, *, process: str, key: str, title: str, period_start: datetime | None,
                  period_end: datetime | None, flow_run_id: str | None = None,
                  status: OccasionStatus = OccasionStatus.open, phase: str = "", due_at: datetime | None = None,
                  parameters: dict[str, Any] | None = None) -> tuple[Occasion, bool]:
    """The occasion (`process`, `key`), created if new (trail "occasion.opened"); and whether this call created
    it. Of two runs opening the same occasion at once, one creates it and the other gets that row.

    `due_at` (when its people must have answered) and `parameters` (the opening run's, as given: JSON values)
    are stored only by the call that creates it: an occasion opened already keeps its own, so a re-run given
    another window does not move the deadline. A deadline known only later is set once with `set_due`.

    No look first: the INSERT … ON CONFLICT DO NOTHING is the look, so opening costs one statement and an
    occasion opened already one more (the SELECT of the stored row)."""
    row = Occasion(process=process, key=key, title=title, status=status, phase=phase, flow_run_id=flow_run_id,
                   period_start=as_utc(period_start) if period_start else None,
                   period_end=as_utc(period_end) if period_end else None,
                   due_at=as_utc(due_at) if due_at else None, parameters=parameters)
    occasion, created = insert_once(db, row, lambda: find(db, process, key))
    if created:
        trail.record(db, actor=process, action="occasion.opened", entity_type="occasion", entity_id=occasion.id or 0,
                     data={"process": process, "key": key, "status": occasion.status.value,
                           "period_start": occasion.period_start, "period_end": occasion.period_end,
                           "flow_run_id": flow_run_id,
                           "due_at": occasion.due_at.isoformat() if occasion.due_at else None,
                           "parameters": occasion.parameters})
    return occasion, created


def set_due(db: Session, occasion: Occasion, due_at: datetime, *, actor: str | None = None) -> bool:
    """The occasion's deadline, set once: one conditional UPDATE (where it has none), so of two runs setting it
    at the same moment one wins (True, trail "occasion.due") and the other reads the winner's (False; the
    occasion it holds then says it). An occasion with a deadline keeps it."""
    due = as_utc(due_at)
    if update_once(db, Occasion, occasion.id or 0, where=[col(Occasion.due_at).is_(None)], values={"due_at": due}):
        trail.record(db, actor=actor or occasion.process, action="occasion.due", entity_type="occasion",
                     entity_id=occasion.id or 0, data={"before": None, "after": due.isoformat()})
        return True
    db.refresh(occasion)  # the winner's deadline, not this session's stale copy
    return False


def claim_phase(db: Session, occasion_id: int, from_phase: str, to_phase: str) -> bool:
    """Move the occasion from `from_phase` to `to_phase` if it is still there: one conditional UPDATE, so of two
    runs only one wins (and builds the report, sends the sign-off...)."""
    return update_once(db, Occasion, occasion_id, where=[col(Occasion.phase) == from_phase],
                       values={"phase": to_phase})


def set_status(db: Session, occasion: Occasion, status: OccasionStatus, *, actor: str) -> bool:
    """Move a not yet ended occasion to `status` (trail "occasion.status", before and after); False if it has
    ended or is there already."""
    before = occasion.status
    if not update_once(db, Occasion, occasion.id or 0,
                       where=[col(Occasion.status) != status, col(Occasion.status).not_in(ENDED)],
                       values={"status": status}):
        return False
    trail.record(db, actor=actor, action="occasion.status", entity_type="occasion", entity_id=occasion.id or 0,
                 data={"before": before.value, "after": status.value})
    return True


def record_report(db: Session, occasion: Occasion, saved: SavedReport, *, actor: str | None = None) -> None:
    """The occasion's report is `saved` (its path and SHA-256, what a sign-off refers to)."""
    before = {"report_path": occasion.report_path, "report_sha256": occasion.report_sha256}
    occasion.report_path, occasion.report_sha256 = str(saved.path), saved.sha256
    db.add(occasion)
    db.flush()
    trail.record(db, actor=actor or occasion.process, action="occasion.report", entity_type="occasion",
                 entity_id=occasion.id or 0,
                 data={"before": before, "after": {"report_path": occasion.report_path,
                                                   "report_sha256": occasion.report_sha256}})


def close(db: Session, occasion: Occasion, *, status: OccasionStatus = OccasionStatus.closed, actor: str) -> bool:
    """End the occasion (closed or cancelled) once: False if it had ended already."""
    if status not in ENDED:
        raise ValueError(f"an occasion ends closed or cancelled, not {status}")
    before = occasion.status
    now = utcnow()
    if not update_once(db, Occasion, occasion.id or 0, where=[col(Occasion.status).not_in(ENDED)],
                       values={"status": status, "closed_at": now}):
        return False
    trail.record(db, actor=actor, action="occasion.closed", entity_type="occasion", entity_id=occasion.id or 0,
                 data={"before": before.value, "after": status.value, "closed_at": now})
    return True
