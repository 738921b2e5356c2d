"""A purchase request's messages and its order to the vendor, shared by the processes that handle one: the
reorder orders what needs no approval (and, daily, what is approved but not yet ordered), the approval orders
what it approved. Each order is placed once, by one conditional UPDATE, whichever gets there first.

An over-budget request says so in every message about it: its approvers see the breach (amount, % of the year's
budget, what remained before it), its requester is told why it needs more approvals and how they decided, and
its vendor's purchase order says it was authorised as spend beyond the cost centre's budget and by whom (not our
budget figures: those are the organisation's own)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from prefect import task
from sqlalchemy import update
from sqlmodel import Session, col, select

from engine import notify, periods
from engine.work import unit
from flows.supply.purchase_budget import holders
from flows.supply.purchase_rules import DIRECTOR_ROLE, line_amount, readable_money
from registry import (
    CostCentre,
    InventoryItem,
    Person,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    Vendor,
    trail,
)
from registry.clock import utcnow
from registry.people import get_person, names_by_id, person_with_role

ORDER_NOT_SENT = "purchase_request.order_not_sent"
TEMPLATES = "supply/purchase_approval"


def request_context(db: Session, request: PurchaseRequest) -> dict[str, Any]:
    """What every purchase message says of a request: its vendor, requester, amount, lines, approvers and where it
    is charged (with its breach of the cost centre's budget, if any)."""
    vendor = db.get(Vendor, request.vendor_id)
    assert vendor is not None
    rows = db.exec(select(PurchaseRequestLine, InventoryItem)
                   .join(InventoryItem, col(InventoryItem.id) == PurchaseRequestLine.item_id)
                   .where(PurchaseRequestLine.request_id == request.id).order_by(col(InventoryItem.sku)))
    lines = [{"sku": item.sku, "description": item.description, "location": item.location,
              "quantity": line.quantity, "unit_cost": readable_money(line.unit_cost),
              "amount": line_amount(line.quantity, line.unit_cost)} for line, item in rows]
    requester = get_person(db, request.requester_id)
    budget = _budget_context(db, request)
    names = names_by_id(db, request.approvers)
    director = person_with_role(db, DIRECTOR_ROLE)
    roles = {budget["approver_id"]: "budget"} if budget else {}
    roles = {director.id: "director", **roles} if director is not None else roles
    approvers = [{"name": names[person_id], "role": roles.get(person_id, "")} for person_id in request.approvers]
    return {"request": {"id": request.id, "key": request.key, "amount": readable_money(request.amount),
                        "created_at": request.created_at, "levels": len(request.approvers)},
            "vendor": {"code": vendor.code, "name": vendor.name},
            "requester": {"name": requester.name, "email": requester.email}, "lines": lines,
            "approvers": approvers, "budget": budget}


def _budget_context(db: Session, request: PurchaseRequest) -> dict[str, Any] | None:
    """Where the request is charged and, when it goes over the cost centre's budget, by how much and who answers
    for that budget in its chain (the owner, or the one standing in for them); None when charged nowhere."""
    if request.cost_centre_id is None:
        return None
    cost_centre = db.get(CostCentre, request.cost_centre_id)
    assert cost_centre is not None
    over = None
    approver_id = None
    if request.over_budget_amount is not None:
        remaining = request.budget_remaining or Decimal(0)
        # Messages get plain data: what remained, or how far over it already was, each None when it does not apply.
        over = {"amount": request.over_budget_amount, "remaining": request.budget_remaining,
                "left": remaining if remaining > 0 else None, "over_before": -remaining if remaining < 0 else None,
                "share": request.over_budget_pct / 100 if request.over_budget_pct is not None else None,
                "year": periods.today(request.created_at).year}
        holder = holders(db, [cost_centre.id or 0])[cost_centre.id or 0]
        approver_id = next((p for p in (holder.owner_id, holder.stand_in_id)
                            if p is not None and p != request.requester_id and p in request.approvers), None)
    return {"cost_centre": {"code": cost_centre.code, "name": cost_centre.name}, "account": request.account,
            "remaining": request.budget_remaining, "over": over, "approver_id": approver_id,
            "approver": get_person(db, approver_id).name if approver_id is not None else None,
            "owner": get_person(db, cost_centre.owner_id).name}


def notify_over_budget(db: Session, request: PurchaseRequest) -> None:
    """Tell the requester, when the request is raised, that it goes over its cost centre's budget and whom that
    brings into its chain (keyed: once per request)."""
    requester = get_person(db, request.requester_id)
    notify.enqueue(db, key=f"purchase-{request.id}-over-budget", recipient_id=requester.id or 0,
                   template=f"{TEMPLATES}/over_budget",
                   context={**request_context(db, request), "recipient": notify.recipient(requester)})


def _place_one(db: Session, request: PurchaseRequest, actor: str) -> bool:
    """Send the order if the vendor has a contact; otherwise leave it approved, noted once, the requester told.
    Whether it was ordered now."""
    vendor = db.get(Vendor, request.vendor_id)
    assert vendor is not None and request.id is not None
    contact = db.get(Person, vendor.contact_id) if vendor.contact_id else None
    context = request_context(db, request)
    if contact is None:
        # One conditional UPDATE: the requester is told once, however many daily runs still find no contact.
        noted = db.execute(update(PurchaseRequest).where(
            col(PurchaseRequest.id) == request.id, col(PurchaseRequest.order_not_sent_at).is_(None))
            .values(order_not_sent_at=utcnow()).execution_options(synchronize_session=False))
        if noted.rowcount == 1:  # type: ignore[attr-defined]
            trail.record(db, actor=actor, action=ORDER_NOT_SENT, entity_type="purchase_request",
                         entity_id=request.id, data={"vendor": vendor.code,
                                                     "reason": "the vendor has no order contact"})
            requester = get_person(db, request.requester_id)
            notify.enqueue(db, key=f"purchase-{request.id}-no-contact", recipient_id=requester.id or 0,
                           template=f"{TEMPLATES}/no_contact",
                           context={**context, "recipient": notify.recipient(requester)})
        return False
    # One conditional UPDATE decides who places the order, should the daily run and an approval run meet here.
    claimed = db.execute(update(PurchaseRequest).where(
        col(PurchaseRequest.id) == request.id, col(PurchaseRequest.status) == RequestStatus.approved)
        .values(status=RequestStatus.ordered, ordered_at=utcnow()).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    trail.record(db, actor=actor, action="purchase_request.ordered", entity_type="purchase_request",
                 entity_id=request.id, data={"vendor": vendor.code, "contact": contact.email,
                                             "amount": f"{request.amount:.2f}", "lines": len(context["lines"])})
    notify.enqueue(db, key=f"purchase-{request.id}-order", recipient_id=contact.id or 0,
                   template=f"{TEMPLATES}/order",
                   context={**context, "recipient": notify.recipient(contact), "ordered_at": utcnow()})
    return True


@task
def place_orders(actor: str, request_ids: list[int] | None = None) -> list[int]:
    """Order every approved request (or just `request_ids`); the ids ordered now.

    A request whose vendor has no contact stays approved, so a later daily run orders it once a contact is set.
    """
    with unit() as db:
        query = select(PurchaseRequest).where(PurchaseRequest.status == RequestStatus.approved)
        if request_ids is not None:
            query = query.where(col(PurchaseRequest.id).in_(request_ids))
        return [request.id or 0 for request in db.exec(query.order_by(col(PurchaseRequest.id))).all()
                if _place_one(db, request, actor)]
