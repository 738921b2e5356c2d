"""One purchase request's approval chain, level by level, then the order to the vendor."""

from __future__ import annotations

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from engine import gate, runs
from flows.supply.purchase_approval.tasks import ACTOR, apply_decision, ask_approver, next_level, state
from flows.supply.purchase_orders import place_orders


class ApprovalParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    request_id: int = Field(ge=1, title="Purchase request", description="Id of the purchase request to approve.")
    approval_days: int = Field(2, ge=1, le=30, title="Approval window (working days)",
                               description="How long each approver has before the request is escalated.")


class ApprovalOutcome(BaseModel):
    request_id: int
    status: str
    approved_levels: int
    levels: int
    detail: str = ""


@runs.process_flow("purchase-approval")
def purchase_approval(params: ApprovalParameters) -> ApprovalOutcome:
    """Approval chain of one purchase request.

    Asks each approver in the request's chain in order (the requester's manager, then for large amounts the
    Director of Operations; for a request over its cost centre's budget the cost centre's owner before the
    Director, each shown the breach), waiting suspended for each answer; the next level is asked only after the
    previous one approved. A rejection stops the chain and tells the requester why. A fully approved request is
    ordered: its vendor contact receives the purchase order, which says when it was authorised beyond the budget.
    Safe to re-run: every step and message is keyed.
    """
    logger = get_run_logger()
    while (level := next_level(params.request_id)) is not None:
        step_id = ask_approver(params.request_id, level, params.approval_days)
        decided = gate.wait(step_id)
        if isinstance(decided, gate.HeldElsewhere):  # a duplicate run: the holder carries the chain on
            return _outcome(params.request_id, decided.detail)
        logger.info("Purchase request %s, level %s: %s", params.request_id, level, decided.verdict)
        apply_decision(params.request_id, level, decided)
    ordered = place_orders(ACTOR, [params.request_id])
    return _outcome(params.request_id, "ordered" if ordered else None)


def _outcome(request_id: int, detail: str | None) -> ApprovalOutcome:
    now = state(request_id)
    return ApprovalOutcome(request_id=request_id, status=now.status, approved_levels=now.approved_levels,
                           levels=now.levels, detail=detail if detail is not None else now.decision_note)
