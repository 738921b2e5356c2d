"""The purchase approval's tasks: ask a level's approver, apply the decision, place the order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import update
from sqlmodel import Session, col

from engine import formats, gate, notify
from engine.answers import Decision
from engine.deadlines import answer_window
from engine.work import unit
from flows.supply.purchase_approval import rules
from flows.supply.purchase_orders import TEMPLATES, request_context
from registry import (
    HumanStep,
    PurchaseRequest,
    RequestStatus,
    trail,
)
from registry.clock import utcnow
from registry.people import get_person

ACTOR = "purchase-approval"


def _request(db: Session, request_id: int) -> PurchaseRequest:
    found = db.get(PurchaseRequest, request_id)
    if found is None:
        raise ValueError(f"purchase request {request_id} does not exist")
    return found


@task(cache_policy=NO_CACHE)  # asked again after every wait of the same run: it must read the registry afresh
def next_level(request_id: int) -> int | None:
    """The level waiting for a decision, or None once the chain is decided either way."""
    with unit() as db:
        request = _request(db, request_id)
        return rules.next_level(pending=request.status == RequestStatus.pending_approval,
                                approved_levels=request.approved_levels, levels=len(request.approvers))


@task
def ask_approver(request_id: int, level: int, approval_days: int) -> int:
    """The approval step for `level`, asked of that level's approver once, however often the run restarts."""
    with unit() as db:
        request = _request(db, request_id)
        context = request_context(db, request)
        due, final = answer_window(approval_days)
        earlier = [get_person(db, person_id).name for person_id in request.approvers[:level - 1]]
        step = gate.ask(db, key=f"purchase-{request_id}-level-{level}", approver_id=request.approvers[level - 1],
                        requested_by_id=request.requester_id,
                        title=f"Approve purchase request {request.key} ({context['vendor']['name']}, "
                              f"{formats.money(request.amount)})",
                        subject_type="purchase_request", subject_id=request_id, due_at=due, expires_at=final,
                        template=f"{TEMPLATES}/approval", context={**context, "level": level, "approved_by": earlier},
                        actor=ACTOR,
                        details={"vendor": context["vendor"]["name"], "amount": formats.money_detail(request.amount),
                                 "requested by": context["requester"]["name"],
                                 "level": f"{level} of {len(request.approvers)}",
                                 "approved before": ", ".join(earlier) or "nobody yet",
                                 **_budget_details(context["budget"]),
                                 "lines": [{"SKU": line["sku"], "description": line["description"],
                                            "quantity": line["quantity"],
                                            "unit cost": formats.money_detail(line["unit_cost"]),
                                            "amount": formats.money_detail(line["amount"])}
                                           for line in context["lines"]]})
        request.current_step_id = step.id
        db.add(request)
        return step.id or 0


def _budget_details(budget: dict[str, Any] | None) -> dict[str, Any]:
    """Where the request is charged and, over budget, its breach, as the approval page lists them."""
    if budget is None:
        return {}
    charged = {"cost centre": f"{budget['cost_centre']['code']} {budget['cost_centre']['name']}",
               "account": budget["account"]}
    over = budget["over"]
    if over is None:
        return charged
    return {**charged, "over budget by": formats.money_detail(over["amount"]),
            f"over budget, share of the {over['year']} budget": formats.percent(over["share"]),
            "budget remaining before": formats.money_detail(over["remaining"]),
            "approves for the budget": budget["approver"]}


@task
def apply_decision(request_id: int, level: int, decided: Decision) -> str:
    """Record the decision at `level`: the chain advances, completes, or stops with the requester told why."""
    with unit() as db:
        request = _request(db, request_id)
        step = db.get(HumanStep, decided.step_id)
        assert step is not None
        asked = get_person(db, step.person_id)
        settled = rules.after_decision(approved=decided.approved, level=level, levels=len(request.approvers))
        values: dict[str, Any] = {"approved_levels": level}
        if settled != "next level":
            values = {"status": RequestStatus(settled), "decided_at": utcnow()}
            values |= {"approved_levels": level} if decided.approved else {"decision_note": rules.rejection_reason(
                answered=decided.answered, comment=decided.comment, approver=decided.by_name or asked.name,
                expires_at=step.expires_at, outcome=step.status.value)}
        # Conditional on the level still being open, so a restarted run can never count one approval twice.
        claimed = db.execute(update(PurchaseRequest).where(
            col(PurchaseRequest.id) == request_id, col(PurchaseRequest.status) == RequestStatus.pending_approval,
            col(PurchaseRequest.approved_levels) == level - 1).values(**values)
            .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return request.status.value
        db.refresh(request)
        trail.record(db, actor=decided.by if decided.answered else ACTOR,
                     action="purchase_request.approved" if decided.approved else "purchase_request.rejected",
                     entity_type="purchase_request", entity_id=request_id,
                     data={"level": level, "of": len(request.approvers), "step_id": decided.step_id,
                           "comment": decided.comment, "outcome": step.status.value,
                           # An auditor reads who accepted spend beyond the budget from the decision itself.
                           **({"over_budget_amount": f"{request.over_budget_amount:.2f}"}
                              if request.over_budget_amount is not None else {})})
        if settled == "approved" and request.over_budget_amount is not None:
            requester = get_person(db, request.requester_id)
            notify.enqueue(db, key=f"purchase-{request_id}-approved-over-budget", recipient_id=requester.id or 0,
                           template=f"{TEMPLATES}/approved",
                           context={**request_context(db, request), "recipient": notify.recipient(requester)})
        if not decided.approved:
            requester = get_person(db, request.requester_id)
            notify.enqueue(db, key=f"purchase-{request_id}-rejected", recipient_id=requester.id or 0,
                           template=f"{TEMPLATES}/rejected",
                           context={**request_context(db, request), "recipient": notify.recipient(requester),
                                    "approver": decided.by_name or asked.name, "expired": not decided.answered,
                                    "comment": request.decision_note, "level": level})
        return request.status.value


@dataclass(frozen=True)
class State:
    """Where a request stands, for the run's outcome."""

    status: str
    approved_levels: int
    levels: int
    decision_note: str


@task(cache_policy=NO_CACHE)
def state(request_id: int) -> State:
    with unit() as db:
        request = _request(db, request_id)
        return State(status=request.status.value, approved_levels=request.approved_levels,
                     levels=len(request.approvers), decision_note=request.decision_note or "")
