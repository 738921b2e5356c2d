"""The daily inventory reorder: items at or below their reorder point become purchase requests, one per vendor."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from engine import periods, runs
from flows.supply.inventory_reorder.tasks import (
    ACTOR,
    PLANNER_ROLE,
    create_requests,
    publish,
    select_lines,
    start_approvals,
)
from flows.supply.purchase_orders import place_orders

# A Decimal's JSON schema is "a number or a string": the Run form would show a type toggle for it.
Amount = Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0})]


class ReorderParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    requester: str = Field(
        "", title="Requester (e-mail)",
        description=f"Who the purchase requests are raised for; their manager approves. Empty: the person with the "
                    f"{PLANNER_ROLE} role.")
    auto_approve_limit: Amount = Field(
        Decimal("1000"), ge=0, title="Auto-approval limit",
        description="Requests up to this amount are ordered without asking anyone.")
    director_limit: Amount = Field(
        Decimal("10000"), ge=0, title="Director limit",
        description="Requests above this amount need the Director of Operations after the requester's manager.")
    approval_days: int = Field(2, ge=1, le=30, title="Approval window (working days)",
                               description="How long each approver has before the request is escalated.")

    @model_validator(mode="after")
    def _limits_in_order(self) -> ReorderParameters:
        if self.director_limit < self.auto_approve_limit:
            raise ValueError("the director limit cannot be below the auto-approval limit")
        return self


class ReorderOutcome(BaseModel):
    day: str
    lines: int
    created: list[int] = []
    ordered: list[int] = []
    awaiting_approval: list[int] = []
    deferred_lines: int = 0
    detail: str = ""


@runs.process_flow("inventory-reorder")
def inventory_reorder(params: ReorderParameters) -> ReorderOutcome:
    """Daily inventory reorder.

    Finds every item at or below its reorder point, counting what is already on open purchase requests so nothing
    is ordered twice, and raises one purchase request per vendor. Requests up to the auto-approval limit are
    ordered at once (the vendor contact receives the purchase order); larger ones go to the requester's manager,
    and above the director limit then to the Director of Operations, each through its own purchase-approval run.
    Each request is charged to its vendor's cost centre and account; one that would take the cost centre over what
    remains of its budget for the year is never ordered at once: its chain gains the cost centre's owner before
    the Director, and the requester is told why. Safe to re-run the same day: the same need never becomes a second
    request.
    """
    logger = get_run_logger()
    day = periods.today()
    lines = select_lines()
    logger.info("%s item(s) to reorder", len(lines))
    made = create_requests(lines, day, requester=params.requester, auto_approve_limit=params.auto_approve_limit,
                           director_limit=params.director_limit)
    ordered = place_orders(ACTOR)
    awaiting = start_approvals(params.approval_days)
    publish(day, made.created)
    return ReorderOutcome(day=day.isoformat(), lines=len(lines), created=made.created, ordered=ordered,
                          awaiting_approval=awaiting.request_ids, deferred_lines=made.deferred_lines,
                          detail=awaiting.detail)
