"""The plan review's dispatcher: one continuity-plan-review run per plan due, each waiting for its own owner."""

from __future__ import annotations

from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import task
from prefect.client.orchestration import get_client
from pydantic import BaseModel, ConfigDict, Field

from engine import runs
from engine.followups import fan_out
from engine.settings import get_settings
from flows.continuity.plan_review.flow import ReviewParameters
from flows.continuity.plan_review.tasks import DuePlan, plans_due
from registry.clock import utcnow

REVIEWS = "continuity-plan-review/continuity-plan-review"  # flow/deployment, as prefect.yaml names it


class DispatchParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    lead_days: int = Field(
        14, ge=0, le=180, title="Lead time (days)",
        description="Ask each owner this many days before their plan's review falls due.")
    answer_days: int = Field(
        5, ge=1, le=30, title="Answer window (working days)",
        description="How long each owner has to confirm or revise before the request goes to their manager.")
    preview: bool = Field(False, title="Preview", description="List the plans a review run would start for; "
                                                              "start nothing.")


class DispatchOutcome(BaseModel):
    status: str
    due: list[str] = []
    detail: str = ""


def _ended_unfinished(run_id: str) -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return state is not None and state.is_final() and not state.is_completed()


@task
def start_reviews(due: list[DuePlan], params: DispatchParameters, deployment: str = REVIEWS) -> list[str]:
    """One review run per plan, started once per plan and occasion (the key makes a repeat a no-op).

    The run key carries the plan's code too: ids restart with a fresh registry, Prefect's keys do not. A run for
    the occasion that ended without completing (it crashed, or was cancelled) would otherwise be returned by its
    key every day and the plan never settled: unless its request is still unanswered (an answer or the expiry
    comes first), it is started again, under a key of the day.
    """
    today = utcnow().astimezone(ZoneInfo(get_settings().timezone)).date().isoformat()
    for target in due:
        child = ReviewParameters(plan=target.code, lead_days=params.lead_days,
                                 answer_days=params.answer_days).model_dump(mode="json")
        key = f"plan-review-{target.code}-{target.plan_id}-{target.occasion.isoformat()}"
        run_name = f"review {target.code} ({target.occasion.isoformat()})"
        started = fan_out(deployment, key=key, parameters=child, run_name=run_name)
        if started is not None and not target.waiting and _ended_unfinished(started):
            fan_out(deployment, key=f"{key}-again-{today}", parameters=child, run_name=f"{run_name}, again")
    return [target.code for target in due]


@runs.process_flow("continuity-plan-review-dispatch")
def continuity_review_dispatch(params: DispatchParameters) -> DispatchOutcome:
    """Continuity plan reviews falling due, weekdays: starts one continuity-plan-review run per plan.

    Finds every active continuity plan whose review falls due within the lead time by its review cadence (a plan
    never reviewed is due at once, a plan whose review lapsed is due again from the next day) and starts a review
    run for each, keyed by plan and occasion, so a re-run starts nothing twice. Each run asks the plan's owner
    and waits, suspended, for their answer.
    """
    due = plans_due(None, params.lead_days)
    codes = [target.code for target in due]
    if params.preview:
        return DispatchOutcome(status="preview", due=codes, detail=f"{len(due)} review run(s) would be started")
    started = start_reviews(due, params)
    return DispatchOutcome(status="started", due=codes, detail=f"{len(started)} review run(s) started")
