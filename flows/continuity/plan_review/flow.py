"""Continuity plan reviews: each plan due by its review cadence is confirmed or revised by its owner from a link."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import runs
from engine.settings import get_settings
from flows.continuity.plan_review.tasks import (
    DuePlan,
    PlanResult,
    ask_owner,
    plans_due,
    preview_requests,
    settle,
)
from registry.clock import utcnow


class ReviewParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    plan: str | None = Field(
        None, title="Plan code",
        description="Review only this plan, when it is due. Empty: every active plan due for review.")
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
        return (value.strip() or None) if isinstance(value, str) else value


class ReviewOutcome(BaseModel):
    status: str
    due: list[str] = []
    reviews: list[PlanResult] = []
    detail: str = ""


@task
def start_reviews(due: list[DuePlan], params: ReviewParameters) -> list[str]:
    """One run of this deployment per plan, started once per plan and occasion (the key makes a repeat a no-op).

    The run key carries the plan's code too: ids restart with a fresh registry, Prefect's keys do not. A run for
    the occasion that ended without completing (it crashed, or was cancelled) would otherwise be returned by its
    key every day and the plan never settled: unless its request is still unanswered (an answer or the expiry
    comes first), it is started again, under a key of the day.
    """
    name = f"{flow_run.flow_name}/{deployment.name}"  # attributes, not getters: tests can set them
    today = utcnow().astimezone(ZoneInfo(get_settings().timezone)).date().isoformat()
    for target in due:
        child = {"params": ReviewParameters(plan=target.code, lead_days=params.lead_days,
                                            answer_days=params.answer_days).model_dump(mode="json")}
        key = f"plan-review-{target.code}-{target.plan_id}-{target.occasion.isoformat()}"
        run_name = f"review {target.code} ({target.occasion.isoformat()})"
        started = runs.start(name, child, idempotency_key=key, run_name=run_name)
        ended = started.state is not None and started.state.is_final() and not started.state.is_completed()
        if ended and not target.waiting:
            runs.start(name, child, idempotency_key=f"{key}-again-{today}", run_name=f"{run_name}, again")
    return [target.code for target in due]


def _review(target: DuePlan, answer_days: int) -> PlanResult:
    step_id = ask_owner(target, answer_days)
    try:
        outcome = runs.wait_for_step(step_id)
    except runs.StepHeldElsewhere as held:  # a duplicate run: the holder settles the plan, here it is "waiting"
        get_run_logger().warning("Continuity plan %s: %s", target.code, held)
        return settle(target.plan_id, step_id)
    get_run_logger().info("Continuity plan %s, review step %s: %s", target.code, step_id, outcome.outcome)
    return settle(target.plan_id, step_id)


@runs.process_flow("continuity-plan-review")
def continuity_review(params: ReviewParameters = ReviewParameters()) -> ReviewOutcome:  # noqa: B008 (the UI form default)
    """Continuity plan reviews, daily.

    Finds every active continuity plan whose review falls due within the lead time by its review cadence (a plan
    never reviewed is due at once) and asks its owner, from a link, to confirm the plan as it stands or revise
    it: new recovery-time and recovery-point objectives, a new summary, and a note of what changed. Each plan is
    reviewed in a run of its own that waits, suspended, for the answer. A confirmation records the review; a
    revision also bumps the plan's version, with old and new values in the trail. If the owner does not answer
    in time their manager is told, and the plan is asked about again from the next day. Safe to re-run: every
    request and message is keyed by plan and occasion, and an answer is applied once.
    """
    logger = get_run_logger()
    due = plans_due(params.plan, params.lead_days)
    codes = [target.code for target in due]
    logger.info("%s continuity plan(s) to review: %s", len(due), ", ".join(codes) or "none")
    if params.preview:
        return ReviewOutcome(status="preview", due=codes, detail=preview_requests(due, params.answer_days))
    if params.plan is None and deployment.get_id():
        started = start_reviews(due, params)
        return ReviewOutcome(status="started", due=codes, detail=f"{len(started)} review run(s) started")
    # A plan named, or no deployment to start runs of (called directly): review here, one plan after another.
    reviews = [_review(target, params.answer_days) for target in due]
    detail = ", ".join(f"{r.plan}: {r.outcome}" for r in reviews) or (
        f"{params.plan} is not due for review" if params.plan else "no plan is due for review")
    return ReviewOutcome(status="reviewed", due=codes, reviews=reviews, detail=detail)
