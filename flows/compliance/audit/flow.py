"""The quarterly compliance audit, from evidence requests to the compliance manager's sign-off."""

from __future__ import annotations

import time

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from engine import runs
from engine.deadlines import quarter_of
from engine.settings import get_settings
from flows.compliance.audit.tasks import (
    apply_signoff,
    build_report,
    evaluate,
    open_audit,
    preview_requests,
    request_evidence,
    request_signoff,
    schedule_evaluation,
)
from registry import Audit, AuditStatus, ControlTest, Finding, session
from registry.clock import utcnow

_RUNNER_PREFETCH_SECONDS = 30


class AuditParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    framework: str = Field("Information Security", title="Framework", description="Name of the control framework.")
    period: str | None = Field(
        None, title="Period", description="Quarter to audit, like 2026-Q4. Empty: the current quarter.",
        pattern=r"^\d{4}-[Qq][1-4]$",
    )
    evidence_window_days: int = Field(
        5, ge=0, le=60, title="Evidence window (working days)",
        description="How long owners have to attest their controls.",
    )
    evidence_window_minutes: int | None = Field(
        None, ge=1, le=1440, title="Evidence window in minutes (trial runs)",
        description="Overrides the working days, to try the whole process in minutes.",
    )
    signoff_days: int = Field(3, ge=1, le=30, title="Sign-off window (working days)")
    preview: bool = Field(False, title="Preview", description="Render the evidence requests; write and send nothing.")


class AuditOutcome(BaseModel):
    audit_id: int | None
    period: str
    status: str
    controls: int = 0
    findings: int = 0
    detail: str = ""


@runs.process_flow("compliance-audit")
def compliance_audit(params: AuditParameters = AuditParameters()) -> AuditOutcome:  # noqa: B008 (the UI form default)
    """Quarterly compliance audit of one framework.

    Opens the audit for every control due in the period by its cadence and sends each owner one evidence request
    listing their controls. At the evidence deadline a follow-up run of this deployment evaluates the answers:
    failed or unanswered controls become findings with corrective actions assigned to their owners. It then
    publishes the report and waits, suspended, for the compliance manager's sign-off. Safe to re-run: every
    step is keyed, so nothing is asked or sent twice.
    """
    logger = get_run_logger()
    period = (params.period or quarter_of(utcnow(), get_settings().timezone)).upper()
    if params.preview:
        owners = preview_requests(params.framework, period, params.evidence_window_days)
        return AuditOutcome(audit_id=None, period=period, status="preview",
                            detail=f"{owners} evidence request(s) rendered as an artifact; nothing sent")
    audit_id = open_audit(params.framework, period, params.evidence_window_days, params.evidence_window_minutes)
    with session() as db:
        audit = db.get(Audit, audit_id)
        assert audit is not None
        status, deadline, controls = audit.status, audit.evidence_due_at, len(
            list(db.exec(select(ControlTest.id).where(ControlTest.audit_id == audit_id))))
    if status == AuditStatus.closed:
        return AuditOutcome(audit_id=audit_id, period=period, status=status.value, controls=controls,
                            detail="already signed off")
    if status == AuditStatus.collecting:
        sent = request_evidence(audit_id)
        logger.info("Evidence requests delivered: %s", sent)
        early = (deadline - utcnow()).total_seconds()
        if 0 < early <= _RUNNER_PREFETCH_SECONDS:
            time.sleep(early)  # the runner starts scheduled runs a few seconds ahead of their time
        elif early > 0:
            detail = schedule_evaluation(params.model_copy(update={"period": period}).model_dump(mode="json"),
                                         f"evaluate {params.framework} {period}", audit_id)
            return AuditOutcome(audit_id=audit_id, period=period, status=status.value, controls=controls,
                                detail=detail)
    summary: dict[str, int] = {}
    if status in (AuditStatus.collecting, AuditStatus.changes_requested):
        summary = evaluate(audit_id)
        build_report(audit_id)
        request_signoff(audit_id, summary, params.signoff_days)
    with session() as db:
        audit = db.get(Audit, audit_id)
        assert audit is not None and audit.signoff_step_id is not None
        step_id = audit.signoff_step_id
    try:
        outcome = runs.wait_for_step(step_id)
    except runs.StepHeldElsewhere as held:
        detail = f"the sign-off is already awaited by flow run {held.holder}"
        logger.warning("Nothing to do: %s", detail)
        return AuditOutcome(audit_id=audit_id, period=period, status=AuditStatus.awaiting_signoff.value,
                            controls=controls, detail=detail)
    logger.info("Sign-off step %s: %s", step_id, outcome.outcome)
    final = apply_signoff(audit_id, step_id)
    with session() as db:
        findings = len(list(db.exec(select(Finding.id).where(Finding.audit_id == audit_id))))
    return AuditOutcome(audit_id=audit_id, period=period, status=final, controls=controls, findings=findings,
                        detail=f"sign-off {outcome.outcome}")
