"""The continuity plan review: a plan's owner confirms or revises it from a link, or their manager hears of it."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import gate, runs
from flows.continuity.plan_review.tasks import DuePlan, PlanResult, ask_owner, plans_due, preview_requests, settle


class ReviewParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    plan: str = Field(
        "", title="Plan code",
        description="Review only this plan, when it is due. Empty: every active plan due for review, in turn.")
    lead_days: int = Field(
        14, ge=0, le=180, title="Lead time (days)",
        description="Ask the owner this many days before the plan's review falls due.")
    answer_days: int = Field(
        5, ge=1, le=30, title="Answer window (working days)",
        description="How long the owner has to confirm or revise before the request goes to their manager.")
    preview: bool = Field(False, title="Preview",
                          description="Render the review requests that would be sent; write and send nothing.")

    @field_validator("plan", mode="before")
    @classmethod
    def _blank_is_every_plan(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


class ReviewOutcome(BaseModel):
    status: str
    due: list[str] = []
    reviews: list[PlanResult] = []
    detail: str = ""


def _review(target: DuePlan, answer_days: int) -> PlanResult:
    step_id = ask_owner(target, answer_days)
    if isinstance(held := gate.wait_for_answer(step_id), gate.HeldElsewhere):
        get_run_logger().warning("Continuity plan %s: %s; that run settles the plan", target.code, held.detail)
    return settle(target.plan_id, step_id)


@runs.process_flow("continuity-plan-review")
def continuity_review(params: ReviewParameters) -> ReviewOutcome:
    """Continuity plan review of one plan (as continuity-plan-review-dispatch starts it), or of every plan due.

    Asks the plan's owner, from a link, to confirm the plan as it stands or revise it: new recovery-time and
    recovery-point objectives, a new summary, and a note of what changed. The run waits, suspended, for the
    answer. A confirmation records the review; a revision also bumps the plan's version, with old and new values
    in the trail. If the owner does not answer in time their manager is told, and the plan is asked about again
    from the next day. A plan not due is left alone. Safe to re-run: every request and message is keyed by plan
    and occasion, and an answer is applied once.
    """
    due = plans_due(params.plan, params.lead_days)
    codes = [target.code for target in due]
    print(f"{len(due)} continuity plan(s) to review: {', '.join(codes) or 'none'}")
    if params.preview:
        return ReviewOutcome(status="preview", due=codes, detail=preview_requests(due, params.answer_days))
    reviews = [_review(target, params.answer_days) for target in due]
    detail = ", ".join(f"{r.plan}: {r.outcome}" for r in reviews) or (
        f"{params.plan} is not due for review" if params.plan else "no plan is due for review")
    return ReviewOutcome(status="reviewed", due=codes, reviews=reviews, detail=detail)
