"""The purchase approval's tasks: ask a level's approver, apply the decision, place the order."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prefect import task
from sqlalchemy import update
from sqlmodel import Session, col, select

from engine import notify, runs
from engine.deadlines import answer_window
from engine.human_steps import ask
from flows.supply.purchase_approval.rules import CENT, line_amount
from registry import (
    AuditEvent,
    HumanStep,
    InventoryItem,
    Person,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    StepStatus,
    Vendor,
    session,
    trail,
)
from registry.clock import utcnow
from registry.people import get_person

ACTOR = "purchase-approval"
ORDER_NOT_SENT = "purchase_request.order_not_sent"


def _request(db: Session, request_id: int) -> PurchaseRequest:
    found = db.get(PurchaseRequest, request_id)
    if found is None:
        raise ValueError(f"purchase request {request_id} does not exist")
    return found


def _money(value: Decimal) -> Decimal:
    """To the cent for reading, unless a unit cost really has finer precision (stored with four places)."""
    cents = value.quantize(CENT)
    return cents if cents == value else value.normalize()


def request_context(db: Session, request: PurchaseRequest) -> dict[str, Any]:
    """What every purchase message says of a request: its vendor, requester, amount and lines."""
    vendor = db.get(Vendor, request.vendor_id)
    assert vendor is not None
    rows = db.exec(select(PurchaseRequestLine, InventoryItem)
                   .join(InventoryItem, col(InventoryItem.id) == PurchaseRequestLine.item_id)
                   .where(PurchaseRequestLine.request_id == request.id).order_by(col(InventoryItem.sku)))
    lines = [{"sku": item.sku, "description": item.description, "location": item.location,
              "quantity": line.quantity, "unit_cost": _money(line.unit_cost),
              "amount": line_amount(line.quantity, line.unit_cost)} for line, item in rows]
    requester = get_person(db, request.requester_id)
    return {"request": {"id": request.id, "key": request.key, "amount": _money(request.amount),
                        "created_at": request.created_at, "levels": len(request.approvers)},
            "vendor": {"code": vendor.code, "name": vendor.name},
            "requester": {"name": requester.name, "email": requester.email}, "lines": lines}


def next_level(request_id: int) -> int | None:
    """The level waiting for a decision, or None once the chain is decided either way."""
    with session() as db:
        request = _request(db, request_id)
        if request.status != RequestStatus.pending_approval or request.approved_levels >= len(request.approvers):
            return None
        return request.approved_levels + 1


@task
def ask_approver(request_id: int, level: int, approval_days: int) -> int:
    """The approval step for `level`, asked of that level's approver once, however often the run restarts."""
    with session() as db:
        request = _request(db, request_id)
        context = request_context(db, request)
        due, final = answer_window(approval_days)
        earlier = [get_person(db, person_id).name for person_id in request.approvers[:level - 1]]
        step = ask(db, key=f"purchase-{request_id}-level-{level}", person_id=request.approvers[level - 1],
                   form="approval", kind="approval", requested_by_id=request.requester_id,
                   title=f"Approve purchase request {request.key} ({context['vendor']['name']}, {request.amount:.2f})",
                   subject_type="purchase_request", subject_id=request_id, due_at=due, expires_at=final,
                   flow_run_id=runs.current_run_id(), actor=ACTOR,
                   details={"vendor": context["vendor"]["name"], "amount": f"{request.amount:.2f}",
                            "lines": len(context["lines"]), "requested by": context["requester"]["name"],
                            "level": f"{level} of {len(request.approvers)}",
                            "approved before": ", ".join(earlier) or "nobody yet"})
        request.current_step_id = step.id
        db.add(request)
        approver = get_person(db, step.person_id)
        rows = notify.enqueue(db, key=f"purchase-{request_id}-level-{level}", recipient_id=step.person_id,
                              template="supply/purchase_approval/approval",
                              context={**context, "recipient": notify.recipient(approver), "level": level,
                                       "approved_by": earlier, "step_id": step.id, "due_at": step.due_at})
        ids = [r.id for r in rows if r.id is not None]
        step_id = step.id or 0
    notify.deliver_due(ids=ids)
    return step_id


@task
def apply_decision(request_id: int, level: int, step_id: int) -> str:
    """Record the decision at `level`: the chain advances, completes, or stops with the requester told why."""
    with session() as db:
        request = _request(db, request_id)
        step = db.get(HumanStep, step_id)
        assert step is not None
        if step.status == StepStatus.pending:
            return request.status.value
        answer = step.answer or {}
        approved = step.status == StepStatus.answered and answer.get("decision") == "approve"
        approver = get_person(db, step.answered_by_id or step.person_id)
        last = level == len(request.approvers)
        values: dict[str, Any] = {"approved_levels": level} if approved else {
            "status": RequestStatus.rejected, "decided_at": utcnow(), "decision_note": _why(step, approver)}
        if approved and last:
            values |= {"status": RequestStatus.approved, "decided_at": utcnow()}
        # Conditional on the level still being open, so a restarted run can never count one approval twice.
        claimed = db.execute(update(PurchaseRequest).where(
            col(PurchaseRequest.id) == request_id, col(PurchaseRequest.status) == RequestStatus.pending_approval,
            col(PurchaseRequest.approved_levels) == level - 1).values(**values)
            .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return request.status.value
        db.refresh(request)
        data = {"level": level, "of": len(request.approvers), "step_id": step_id,
                "comment": answer.get("comment", ""), "outcome": step.status.value}
        actor = approver.email if step.status == StepStatus.answered else ACTOR
        trail.record(db, actor=actor, action="purchase_request.approved" if approved else "purchase_request.rejected",
                     entity_type="purchase_request", entity_id=request_id, data=data)
        ids: list[int] = []
        if not approved:
            requester = get_person(db, request.requester_id)
            rows = notify.enqueue(db, key=f"purchase-{request_id}-rejected", recipient_id=requester.id or 0,
                                  template="supply/purchase_approval/rejected",
                                  context={**request_context(db, request), "recipient": notify.recipient(requester),
                                           "approver": approver.name, "expired": step.status != StepStatus.answered,
                                           "comment": request.decision_note, "level": level})
            ids = [r.id for r in rows if r.id is not None]
        status = request.status.value
    notify.deliver_due(ids=ids)
    return status


def _why(step: HumanStep, approver: Person) -> str:
    """The reason the requester is given; an approver who let the deadline pass is a reason too."""
    if step.status == StepStatus.answered:
        return str((step.answer or {}).get("comment", "")).strip()
    return f"{approver.name} did not decide by {step.expires_at:%Y-%m-%d %H:%M} UTC (step {step.status.value})."


def _place_one(db: Session, request: PurchaseRequest, actor: str) -> tuple[bool, list[int]]:
    """Send the order if the vendor has a contact; otherwise leave it approved, noted once, the requester told.

    Whether it was ordered now, and the messages queued for it.
    """
    vendor = db.get(Vendor, request.vendor_id)
    assert vendor is not None and request.id is not None
    contact = db.get(Person, vendor.contact_id) if vendor.contact_id else None
    context = request_context(db, request)
    if contact is None:
        noted = db.exec(select(AuditEvent.id).where(AuditEvent.action == ORDER_NOT_SENT,
                                                    AuditEvent.entity_type == "purchase_request",
                                                    AuditEvent.entity_id == request.id)).first()
        if noted is None:
            trail.record(db, actor=actor, action=ORDER_NOT_SENT, entity_type="purchase_request",
                         entity_id=request.id, data={"vendor": vendor.code,
                                                     "reason": "the vendor has no order contact"})
            requester = get_person(db, request.requester_id)
            rows = notify.enqueue(db, key=f"purchase-{request.id}-no-contact", recipient_id=requester.id or 0,
                                  template="supply/purchase_approval/no_contact",
                                  context={**context, "recipient": notify.recipient(requester)})
            return False, [row.id for row in rows if row.id is not None]
        return False, []
    # One conditional UPDATE decides who places the order, should the daily run and an approval run meet here.
    claimed = db.execute(update(PurchaseRequest).where(
        col(PurchaseRequest.id) == request.id, col(PurchaseRequest.status) == RequestStatus.approved)
        .values(status=RequestStatus.ordered, ordered_at=utcnow()).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False, []
    trail.record(db, actor=actor, action="purchase_request.ordered", entity_type="purchase_request",
                 entity_id=request.id, data={"vendor": vendor.code, "contact": contact.email,
                                             "amount": f"{request.amount:.2f}", "lines": len(context["lines"])})
    rows = notify.enqueue(db, key=f"purchase-{request.id}-order", recipient_id=contact.id or 0,
                          template="supply/purchase_approval/order",
                          context={**context, "recipient": notify.recipient(contact), "ordered_at": utcnow()})
    return True, [row.id for row in rows if row.id is not None]


@task
def place_orders(request_ids: list[int] | None = None, actor: str = ACTOR) -> list[int]:
    """Order every approved request (or just `request_ids`); the ids ordered now.

    A request whose vendor has no contact stays approved, so a later daily run orders it once a contact is set.
    """
    with session() as db:
        query = select(PurchaseRequest).where(PurchaseRequest.status == RequestStatus.approved)
        if request_ids is not None:
            query = query.where(col(PurchaseRequest.id).in_(request_ids))
        ordered: list[int] = []
        ids: list[int] = []
        for request in db.exec(query.order_by(col(PurchaseRequest.id))).all():
            placed, queued = _place_one(db, request, actor)
            ordered += [request.id or 0] if placed else []
            ids += queued
    notify.deliver_due(ids=ids)
    return ordered


@dataclass(frozen=True)
class State:
    """Where a request stands, for the run's outcome."""

    status: str
    approved_levels: int
    levels: int
    decision_note: str


def state(request_id: int) -> State:
    with session() as db:
        request = _request(db, request_id)
        return State(status=request.status.value, approved_levels=request.approved_levels,
                     levels=len(request.approvers), decision_note=request.decision_note or "")
