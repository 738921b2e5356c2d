"""The quarterly compliance audit, from evidence requests to the compliance manager's sign-off."""

from __future__ import annotations

from typing import Annotated

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from engine import gate, periods, runs
from engine.followups import follow_up
from engine.parameters import OneOf
from engine.work import preview
from flows.compliance.audit.tasks import AuditState, apply_signoff, open_audit, report_for_signoff, request_evidence
from registry.clock import as_utc, utcnow

RUNNER_PREFETCH_SECONDS = 30  # the runner starts a scheduled run this early: it waits for the deadline, not again


class AuditParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    framework: Annotated[str, OneOf("framework")] = Field(
        "Information Security", title="Framework", description="The control framework to audit.")
    period: str = Field(
        "", title="Period", description="Quarter to audit, like 2026-Q4. Empty: the current quarter.",
        pattern=r"^(\d{4}-[Qq][1-4])?$",
    )
    evidence_window_days: int = Field(
        5, ge=0, le=60, title="Evidence window (working days)",
        description="How long owners have to attest their controls.",
    )
    evidence_window_minutes: int = Field(
        0, ge=0, le=1440, title="Evidence window in minutes (trial runs)",
        description="Overrides the working days, to try the whole process in minutes. 0: the working days apply.",
    )
    signoff_days: int = Field(3, ge=1, le=30, title="Sign-off window (working days)",
                              description="How long the compliance manager has to sign the report off.")
    preview: bool = Field(False, title="Preview", description="Render the evidence requests; write and send nothing.")


class AuditOutcome(BaseModel):
    audit_id: int | None
    period: str
    status: str
    controls: int = 0
    findings: int = 0
    detail: str = ""


def _outcome(state: AuditState, period: str, detail: str, status: str | None = None) -> AuditOutcome:
    return AuditOutcome(audit_id=state.audit_id, period=period, status=status or state.phase,
                        controls=state.controls, findings=state.findings, detail=detail)


@runs.process_flow("compliance-audit")
def compliance_audit(params: AuditParameters) -> AuditOutcome:
    """Quarterly compliance audit of one framework.

    Opens the audit for every control due in the period by its cadence and sends each owner one evidence request
    listing their controls. At the evidence deadline a follow-up run of this deployment evaluates the answers:
    failed or unanswered controls become findings with corrective actions assigned to their owners. It then
    publishes the report and waits, suspended, for the compliance manager's sign-off. Safe to re-run: every
    step is keyed, so nothing is asked or sent twice.
    """
    logger = get_run_logger()
    period = (params.period or periods.quarter_of_day(periods.today()).name).upper()
    window = (params.evidence_window_days, params.evidence_window_minutes or None)
    if params.preview:
        with preview(f"Evidence requests, {params.framework} {period}") as shown:
            request_evidence.fn(open_audit.fn(params.framework, period, *window).audit_id)
        return AuditOutcome(audit_id=None, period=period, status="preview",
                            detail=f"{len(shown.messages)} evidence request(s) rendered as an artifact; nothing sent")

    state = open_audit(params.framework, period, *window)
    if state.phase == "closed":
        return _outcome(state, period, "already signed off")
    if state.phase == "collecting":
        logger.info("Evidence requested from %s owner(s)", request_evidence(state.audit_id))
        if (as_utc(state.evidence_due_at) - utcnow()).total_seconds() > RUNNER_PREFETCH_SECONDS:
            return _outcome(state, period, follow_up(
                key=f"audit-{state.audit_id}-evaluate", at=state.evidence_due_at,
                parameters=params.model_copy(update={"period": period}).model_dump(mode="json"),
                run_name=f"evaluate {params.framework} {period}"))

    step_id = state.signoff_step_id
    if state.phase in ("collecting", "changes_requested"):
        step_id = report_for_signoff(state.audit_id, state.phase, params.signoff_days)
        if step_id is None:
            return _outcome(state, period, "another run is evaluating this audit at the same moment")
    assert step_id is not None, f"audit {state.audit_id} awaits a sign-off without a step"

    decided = gate.wait(step_id)
    if isinstance(decided, gate.HeldElsewhere):
        logger.warning("Nothing to do: the sign-off is %s", decided.detail)
        return _outcome(state, period, f"the sign-off is {decided.detail}", status="awaiting_signoff")
    logger.info("Sign-off step %s: %s", step_id, decided.verdict.value)
    return _outcome(apply_signoff(state.audit_id, decided), period, f"sign-off {decided.verdict.value}")
