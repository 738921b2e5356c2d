"""Emergency and continuity drills: everyone on a facility's roster acknowledges from a link, the missing are
escalated, and the after-action report turns what went wrong into corrective actions."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from engine import runs
from engine.parameters import OneOf
from flows.continuity.drill.report import AfterAction, build_after_action
from flows.continuity.drill.tasks import close_drill, open_drill, preview_drill, watch


class DrillParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    facility: Annotated[str, OneOf("facility")] = Field(
        title="Facility", description="Code of the facility whose roster is drilled.")
    kind: Annotated[str, OneOf("drill kind", only=False)] = Field(
        "fire_evacuation", title="Kind of drill",
        description="The facility's programme of this kind gives the plan and the windows; a kind it has no "
                    "programme of is an ad-hoc drill with the windows below.")
    window_minutes: float = Field(0, ge=0, le=24 * 60, title="Acknowledgement window (minutes)",
                                  description="How long people have to acknowledge. 0: the programme's (20 "
                                              "without one). Fractions for trial runs.")
    escalate_after_minutes: float = Field(
        0, ge=0, le=24 * 60, title="Escalate after (minutes)",
        description="When the still missing are escalated to their warden and manager. 0: the programme's "
                    "(5 without one).")
    measure: Literal["", "headcount", "recovery"] = Field(
        "", title="What recovery means",
        description="headcount: everyone accounted for (an evacuation); recovery: the service restored, as the "
                    "plan's owner reports it (a continuity exercise). Empty: the programme's (headcount without one).")
    occasion: str = Field("", title="Occasion",
                                 description="Set by emergency-drill-dispatch: the programme's due time this drill "
                                             "is for. Empty: an unscheduled drill.")
    preview: bool = Field(False, title="Preview", description="Render the alert; write and send nothing.")


class DrillOutcome(BaseModel):
    drill_id: int | None
    facility: str
    kind: str
    status: str
    accounted: int = 0
    total: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None
    recovery_minutes: float | None = None
    data_loss_minutes: float | None = None
    findings: int = 0
    report: str = ""
    detail: str = ""

    @classmethod
    def of(cls, drill_id: int, done: AfterAction) -> DrillOutcome:
        result = done.figures
        return cls(drill_id=drill_id, facility=done.facility, kind=done.kind, status=done.status,
                   accounted=result.accounted, total=result.total, median_seconds=result.median_seconds,
                   p90_seconds=result.p90_seconds, recovery_minutes=result.recovery_minutes,
                   data_loss_minutes=result.data_loss_minutes, findings=done.findings, report=done.report)


@runs.process_flow("emergency-drill")
def emergency_drill(params: DrillParameters) -> DrillOutcome:
    """Emergency or continuity drill at one facility.

    Everyone on the facility's roster gets a personal acknowledgement link ("accounted for", location, "needs
    assistance"). Assistance requests alert the wardens at once; people still missing after the escalation time
    are escalated to their wardens and managers, who can also answer for them. When the window closes: headcount,
    median and 90th-percentile time to account, the missing list, and the recovery time against the continuity
    plan's target, in an after-action report whose findings become corrective actions with owners and due dates;
    the plan's last-tested date is updated. Programmes' scheduled drills are started by emergency-drill-dispatch.
    """
    if params.preview:
        return DrillOutcome(drill_id=None, facility=params.facility, kind=params.kind, status="preview",
                            total=preview_drill(params), detail="preview: nothing written or sent")
    logger = get_run_logger()
    opened = open_drill(params)
    logger.info("Drill %s: %s people alerted", opened.drill_id, opened.participants)
    watched = watch(opened.drill_id)
    logger.info("Drill %s window closed: %s", opened.drill_id, watched)
    close_drill(opened.drill_id)
    return DrillOutcome.of(opened.drill_id, build_after_action(opened.drill_id))
