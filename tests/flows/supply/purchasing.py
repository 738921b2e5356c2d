"""The organisation and stock the reorder and approval tests share: who requests, approves and receives orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlmodel import Session, col, select

from engine import periods
from registry import AuditEvent, CostCentre, InventoryItem, Person, PurchaseRequest, RequestStatus, Vendor, session
from tests import factories
from tests.conftest import Mailbox
from tests.links import links_in


def person_in(db: Session, name: str, *, manager: Person | None = None, roles: tuple[str, ...] = ()) -> Person:
    row = factories.person(db, name, manager=manager)
    row.roles = list(roles)
    db.add(row)
    db.flush()
    return row


@dataclass
class Org:
    director: Person
    manager: Person
    planner: Person
    contact: Person
    vendor: Vendor


def organisation(*, contact: bool = True) -> Org:
    """Dana the director (reporting to Cleo); Max manages Pia the planner; one vendor whose order contact is Cora."""
    with session() as db:
        chief = person_in(db, "Cleo Chief")
        director = person_in(db, "Dana Director", manager=chief, roles=("director",))
        manager = person_in(db, "Max Manager", manager=director)
        planner = person_in(db, "Pia Planner", manager=manager, roles=("inventory_planner",))
        cora = person_in(db, "Cora Contact")
        vendor = factories.vendor(db, owner=manager, contact=cora if contact else None)
        return Org(director=director, manager=manager, planner=planner, contact=cora, vendor=vendor)


def low_item(vendor: Vendor, *, qty: int = 50, unit_cost: str = "4.00") -> InventoryItem:
    """An item at its reorder point whose order is `qty` × `unit_cost`."""
    with session() as db:
        return factories.inventory_item(db, vendor, on_hand=5, reorder_point=10, reorder_qty=qty, unit_cost=unit_cost)


def budget(vendor: Vendor, owner: Person, *, year_budget: str | None, booked: str = "0", committed: str = "0",
           account: str = "6100", manager: Person | None = None) -> CostCentre:
    """A cost centre owned by `owner` that `vendor`'s reorders are charged to, with `year_budget` for this year
    (None: no budget line at all), `booked` in actuals and `committed` in an ordered request not yet invoiced."""
    year = periods.today().year
    with session() as db:
        centre = factories.cost_centre(db, owner=owner, manager=manager)
        if year_budget is not None:
            half = (Decimal(year_budget) / 2).quantize(Decimal("0.01"))
            factories.budget_line(db, centre, date(year, 1, 1), half, account=account)
            factories.budget_line(db, centre, date(year, 12, 1), Decimal(year_budget) - half, account=account)
        if Decimal(booked):
            factories.actual(db, centre, date(year, 1, 15), booked, account=account)
        if Decimal(committed):
            factories.purchase_request(db, vendor, committed, centre=centre, account=account,
                                       status=RequestStatus.ordered)
        charged = db.get(Vendor, vendor.id)
        assert charged is not None
        charged.cost_centre_id, charged.account = centre.id, account
        db.add(charged)
        db.flush()
        db.refresh(centre)
        return centre


def purchase_requests() -> list[PurchaseRequest]:
    with session() as db:
        return list(db.exec(select(PurchaseRequest).order_by(col(PurchaseRequest.id))))


def events(action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))))


def approval_link(smtp: Mailbox, person: Person) -> str:
    [mail] = [m for m in smtp.wait_for(1, seconds=60, to=person.email) if m.subject.startswith("Approval needed")]
    return links_in(mail.html)[0]
