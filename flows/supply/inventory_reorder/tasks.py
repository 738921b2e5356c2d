"""The inventory reorder's tasks: select what is due in one statement, raise the requests, start their approvals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.runtime import deployment
from sqlmodel import Session, col, select

from engine import formats
from engine.followups import fan_out
from engine.work import unit
from flows.supply.inventory_reorder.rules import order_quantity
from flows.supply.purchase_budget import budgets, holders
from flows.supply.purchase_orders import notify_over_budget
from flows.supply.purchase_rules import DIRECTOR_ROLE, BudgetHolder, approval_chain, check_charges, request_amount
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
from registry.people import person_with_role
from registry.supply import OPEN_REQUEST_STATUSES

ACTOR = "inventory-reorder"
APPROVAL_DEPLOYMENT = "purchase-approval/purchase-approval"
PLANNER_ROLE = "inventory_planner"


class ReorderLine(NamedTuple):
    """One item to order. A tuple rather than a dataclass: thousands are built per run, and this is cheaper."""

    item_id: int
    vendor_id: int
    on_hand: int
    open_qty: int
    reorder_point: int
    quantity: int
    unit_cost: Decimal


@cache
def reorder_statement() -> sa.Select[Any]:
    """Items whose stock plus what is already on open purchase requests is at or below their reorder point.

    `on_hand <= reorder_point` appears as such so both planners match the partial index on it and only the few
    candidates it holds are looked at; open quantities are then subtracted for those candidates.
    """
    item = InventoryItem.__table__  # type: ignore[attr-defined]
    line = PurchaseRequestLine.__table__  # type: ignore[attr-defined]
    request = PurchaseRequest.__table__  # type: ignore[attr-defined]
    on_order = (sa.select(line.c.item_id, sa.func.sum(line.c.quantity).label("quantity"))
                .join(request, request.c.id == line.c.request_id)
                .where(request.c.status.in_(OPEN_REQUEST_STATUSES))
                .group_by(line.c.item_id).subquery("on_order"))
    open_qty = sa.func.coalesce(on_order.c.quantity, 0)
    return (sa.select(item.c.id, item.c.vendor_id, item.c.on_hand, item.c.reorder_point, item.c.reorder_qty,
                   item.c.unit_cost, open_qty.label("open_qty"))
            .outerjoin(on_order, on_order.c.item_id == item.c.id)
            .where(item.c.on_hand <= item.c.reorder_point, item.c.on_hand + open_qty <= item.c.reorder_point)
            .order_by(item.c.vendor_id, item.c.id))


@cache
def _compiled(dialect: sa.Dialect) -> tuple[str, Decimal | None]:
    """The statement as this database's SQL (its few constants inline) and the unit cost's smallest unit, by
    which the integer the database returns is multiplied (None where the driver returns Decimal itself).

    Where the driver returns the cost as a float (SQLite), the database scales it to an integer of its smallest
    unit and Decimal takes that: the same value to the column's scale, a fifth of the cost of formatting each
    float in Python (which was most of the difference to the bare query).
    """
    statement = reorder_statement()
    unit_cost = InventoryItem.__table__.c.unit_cost  # type: ignore[attr-defined]
    if dialect.name != "sqlite":  # psycopg returns NUMERIC as Decimal already, at the column's scale
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})), None
    scale = unit_cost.type.scale
    scaled = sa.cast(sa.func.round(unit_cost * 10**scale), sa.Integer).label("unit_cost")
    as_units = statement.with_only_columns(*(scaled if column.name == "unit_cost" else column
                                             for column in statement.selected_columns))
    unit = Decimal(1).scaleb(-scale)
    return str(as_units.compile(dialect=dialect, compile_kwargs={"literal_binds": True})), unit


def select_reorder_lines(db: Session) -> list[ReorderLine]:
    """What to order today, by vendor then item: one statement, and the order quantity rule per row.

    The compiled SQL goes straight to the driver and its rows become lines in one pass: with thousands of items
    due, SQLAlchemy's per-row result processing cost a third as much again as the query itself.
    """
    connection = db.connection()
    sql, unit = _compiled(connection.dialect)
    cursor = connection.connection.cursor()  # the transaction's own DB-API cursor: plain tuples, no Row objects
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    new, rule, dec = tuple.__new__, order_quantity, Decimal  # the rule: (on hand, open, point, quantity)
    if unit is None:
        return [new(ReorderLine, (i, v, h, o, p, rule(h, o, p, q), c)) for i, v, h, p, q, c, o in rows]
    return [new(ReorderLine, (i, v, h, o, p, rule(h, o, p, q), dec(c) * unit)) for i, v, h, p, q, c, o in rows]


@task
def select_lines() -> list[ReorderLine]:
    with unit() as db:
        return select_reorder_lines(db)


def _with_role(db: Session, role: str) -> Person | None:
    person = person_with_role(db, role)
    return person if person is not None and person.active else None


def _requester(db: Session, email: str | None) -> Person:
    if email:
        found = db.exec(select(Person).where(Person.email == email)).first()
        if found is None:
            raise ValueError(f"requester {email!r} is not a person in the registry")
        return found
    planner = _with_role(db, PLANNER_ROLE)
    if planner is None:
        raise ValueError(f"nobody has the {PLANNER_ROLE} role: give the requester's e-mail as a parameter")
    return planner


@dataclass(frozen=True)
class Created:
    created: list[int]
    deferred_lines: int


@task
def create_requests(lines: list[ReorderLine], day: date, *, requester: str | None, auto_approve_limit: Decimal,
                    director_limit: Decimal) -> Created:
    """One purchase request per vendor for `day`, keyed so a vendor gets at most one a day, with its approval chain.

    Each request is charged to its vendor's cost centre and account and checked against what remains of that
    cost centre's budget for the year (one query for all of the run's cost centres); one that would take it over
    carries the breach and its chain gains the cost centre's owner before the Director, and the requester is told
    why. A vendor that already has today's request keeps it unchanged: a need that appeared since waits for
    tomorrow's run rather than changing an amount someone may be approving. All requests are written in one
    transaction.
    """
    with unit() as db:
        asker = _requester(db, requester)
        director = _with_role(db, DIRECTOR_ROLE)
        by_vendor: dict[int, list[ReorderLine]] = {}
        for line in lines:
            by_vendor.setdefault(line.vendor_id, []).append(line)
        vendors = {v.id: v for v in db.exec(select(Vendor).where(col(Vendor.id).in_(by_vendor)))}
        keys = {vendor_id: f"reorder-{vendors[vendor_id].code}-{day.isoformat()}" for vendor_id in by_vendor}
        taken = set(db.exec(select(PurchaseRequest.key).where(col(PurchaseRequest.key).in_(keys.values()))))
        raised = [vendor_id for vendor_id in by_vendor if keys[vendor_id] not in taken]
        amounts = {vendor_id: request_amount((line.quantity, line.unit_cost) for line in by_vendor[vendor_id])
                   for vendor_id in raised}
        charged_to = {cc for v in raised if (cc := vendors[v].cost_centre_id) is not None}
        checks = dict(zip(raised, check_charges([(vendors[v].cost_centre_id, amounts[v]) for v in raised],
                                                budgets(db, charged_to, day.year)), strict=True))
        holder_of = holders(db, charged_to)
        created: list[int] = []
        for vendor_id in raised:
            own, amount, vendor, checked = by_vendor[vendor_id], amounts[vendor_id], vendors[vendor_id], \
                checks[vendor_id]
            over = checked.breach if checked else None
            holder = holder_of[vendor.cost_centre_id] if vendor.cost_centre_id is not None else None
            chain = approval_chain(amount, asker, auto_approve_limit, director_limit,
                                   director_id=director.id if director else None,
                                   over_budget=holder if over else None)
            request = PurchaseRequest(key=keys[vendor_id], vendor_id=vendor_id, requester_id=asker.id or 0,
                                      amount=amount, approvers=chain, cost_centre_id=vendor.cost_centre_id,
                                      account=vendor.account, budget_remaining=checked.remaining if checked else None,
                                      over_budget_amount=over.amount if over else None,
                                      over_budget_pct=over.pct if over else None)
            if not chain:
                request.status, request.decided_at = RequestStatus.approved, utcnow()
            db.add(request)
            db.flush()
            assert request.id is not None
            db.execute(sa.insert(PurchaseRequestLine), [
                {"request_id": request.id, "item_id": line.item_id, "quantity": line.quantity,
                 "unit_cost": line.unit_cost} for line in own])
            approvers = [db.get(Person, person_id) for person_id in chain]
            trail.record(db, actor=ACTOR, action="purchase_request.created", entity_type="purchase_request",
                         entity_id=request.id, data={"key": request.key, "vendor": vendor.code,
                                                     "amount": f"{amount:.2f}", "lines": len(own),
                                                     "requester": asker.email,
                                                     "approvers": [p.email for p in approvers if p],
                                                     **_charge_data(request, holder)})
            if not chain:
                trail.record(db, actor=ACTOR, action="purchase_request.approved", entity_type="purchase_request",
                             entity_id=request.id, data={"auto": True, "limit": f"{auto_approve_limit:.2f}"})
            if over:
                notify_over_budget(db, request)
            created.append(request.id)
    return Created(created=created, deferred_lines=sum(len(by_vendor[v]) for v in by_vendor if keys[v] in taken))


def _charge_data(request: PurchaseRequest, holder: BudgetHolder | None) -> dict[str, Any]:
    """What the trail keeps of where a request is charged and how it stood against the budget."""
    if holder is None:
        return {}
    data: dict[str, Any] = {"cost_centre": holder.cost_centre, "account": request.account,
                            "budget_remaining": f"{request.budget_remaining:.2f}"}
    if request.over_budget_amount is not None:
        data |= {"over_budget_amount": f"{request.over_budget_amount:.2f}", "over_budget_pct": request.over_budget_pct}
    return data


@dataclass(frozen=True)
class Awaiting:
    request_ids: list[int]
    detail: str = ""


@task
def start_approvals(approval_days: int) -> Awaiting:
    """Every request still waiting for approval gets its approval run, once (the key makes a second start a no-op).

    Taking all pending requests, not only this run's, lets a run that failed after writing them catch up. The
    run key carries the request's business key too: ids restart with a fresh registry, Prefect's keys do not.
    Called outside a deployment (a flow called directly) nothing is started, and the outcome says so.
    """
    with unit() as db:
        pending = [(r.id or 0, r.key) for r in db.exec(select(PurchaseRequest).where(
            PurchaseRequest.status == RequestStatus.pending_approval).order_by(col(PurchaseRequest.id)))]
    ids = [request_id for request_id, _ in pending]
    if not deployment.get_id():
        return Awaiting(ids, "not running from a deployment: run purchase-approval for each request awaiting "
                             "approval" if pending else "")
    for request_id, key in pending:
        fan_out(APPROVAL_DEPLOYMENT, key=f"purchase-{request_id}-approval-{key}", run_name=f"approve {key}",
                parameters={"request_id": request_id, "approval_days": approval_days})
    return Awaiting(ids)


@task
def publish(day: date, created: list[int]) -> None:
    if not created:
        return
    with unit() as db:
        found = db.exec(select(PurchaseRequest, Vendor, CostCentre.code)  # type: ignore[call-overload]
                        .join(Vendor, col(Vendor.id) == PurchaseRequest.vendor_id)
                        .outerjoin(CostCentre, col(CostCentre.id) == PurchaseRequest.cost_centre_id)
                        .where(col(PurchaseRequest.id).in_(created)).order_by(col(PurchaseRequest.id)))
        rows = [{"request": r.key, "vendor": v.name, "amount": formats.money(r.amount), "status": r.status.value,
                 "approvers": len(r.approvers), "cost centre": code or "",
                 "over budget by": formats.money(r.over_budget_amount),
                 "over budget, share of the year's budget": formats.percent(
                     r.over_budget_pct / 100 if r.over_budget_pct is not None else None)} for r, v, code in found]
    create_table_artifact(rows, key="inventory-reorder", description=f"Purchase requests raised on {day.isoformat()}")


