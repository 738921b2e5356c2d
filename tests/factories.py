"""Registry rows for tests, with sensible defaults and unique names."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session, func, select

from engine import links
from engine.findings import ActionSpec, Origin, Raised, raise_finding
from engine.human_steps import ask
from engine.occasions import open_occasion
from registry import (
    ContinuityPlan,
    Control,
    Criticality,
    Delivery,
    DrillMeasure,
    DrillProgram,
    Facility,
    Framework,
    HumanStep,
    InventoryItem,
    Occasion,
    Person,
    RosterEntry,
    RosterRole,
    Standing,
    Vendor,
)
from registry.budget import Actual, BudgetLine, CostCentre, LineKind
from registry.clock import utcnow
from registry.db import session as registry_session
from registry.supply import PurchaseRequest, RequestStatus

_counter = itertools.count(1)


def person(db: Session, name: str | None = None, *, manager: Person | None = None,
           channels: list[str] | None = None, active: bool = True) -> Person:
    n = next(_counter)
    name = name or f"Person {n}"
    local = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".")
    row = Person(name=name, email=f"{local}.{n}@test.example", channels=channels or [],
                 manager_id=manager.id if manager else None, active=active)
    db.add(row)
    db.flush()
    return row


def framework(db: Session, *, manager: Person, owners: list[Person], cadence: str = "0 9 1 1,4,7,10 *",
              criticality: Criticality = Criticality.high) -> Framework:
    """A framework with one quarterly control per owner."""
    row = Framework(name=f"Framework {next(_counter)}", compliance_manager_id=manager.id)
    db.add(row)
    db.flush()
    for index, owner in enumerate(owners, start=1):
        db.add(Control(framework_id=row.id or 0, ref=f"C-{index}", title=f"Control {index}", owner_id=owner.id,
                       cadence=cadence, criticality=criticality))
    db.flush()
    return row


def step(db: Session, asked: Person, *, kind: str = "approval", requested_by: Person | None = None,
         due: datetime | None = None, expires: datetime | None = None, flow_run_id: str | None = None,
         form: str | None = None, title: str = "Approve the test request") -> HumanStep:
    due = due or utcnow() + timedelta(days=2)
    return ask(db, key=f"test-step-{next(_counter)}", person_id=asked.id or 0,
               form=form or ("approval" if kind == "approval" else "attestation"), kind=kind,  # type: ignore[arg-type]
               title=title, subject_type="test", subject_id=1, due_at=due,
               expires_at=expires or due, requested_by_id=requested_by.id if requested_by else None,
               flow_run_id=flow_run_id)


def occasion(db: Session, *, process: str = "test-process", key: str | None = None) -> Occasion:
    start = utcnow()
    row, _ = open_occasion(db, process=process, key=key or f"occasion {next(_counter)}", title="A test occasion",
                           period_start=start, period_end=start + timedelta(days=30))
    return row


def finding(db: Session, *, owner: Person, verifier: Person | None = None, due: datetime | None = None,
            severity: Criticality = Criticality.high, on: Occasion | None = None, code: str = "test") -> Raised:
    """A finding raised on a test origin of its own, with a corrective action `owner` is asked to do."""
    n = next(_counter)
    return raise_finding(db, origin=Origin("test", n), code=code, severity=severity,
                         description=f"Finding {n}: the control did not operate", actor="test", process="test-process",
                         action=ActionSpec(owner_id=owner.id or 0, description=f"Fix what finding {n} found",
                                           due_at=due or utcnow() + timedelta(days=10)),
                         verifier_id=verifier.id if verifier else None, occasion_id=on.id if on else None)


def link(db: Session, for_step: HumanStep, holder: Person | None = None) -> str:
    """A live token for `holder` (default: the person asked) to answer `for_step`."""
    token = links.issue(db, step=for_step, person_id=(holder or db.get(Person, for_step.person_id)).id or 0)  # type: ignore[union-attr]
    db.flush()
    return token


def vendor(db: Session, *, owner: Person, contact: Person | None = None, standing: Standing = Standing.approved,
           contract_end: date | None = None, cadence: str = "0 7 1 1,4,7,10 *") -> Vendor:
    n = next(_counter)
    row = Vendor(code=f"V{n:04d}", name=f"Vendor {n}", owner_id=owner.id or 0,
                 contact_id=contact.id if contact else None, standing=standing, contract_end=contract_end,
                 review_cadence=cadence)
    db.add(row)
    db.flush()
    return row


def delivery(db: Session, for_vendor: Vendor, *, promised: date, delivered: date | None, ordered: int = 100,
             received: int | None = None, rejected: int = 0, unit_price: str = "10.00",
             contracted_price: str = "10.00", sku: str = "SKU-1") -> Delivery:
    n = next(_counter)
    row = Delivery(po_number=f"PO{n:06d}", line=1, vendor_id=for_vendor.id or 0, sku=sku, promised_date=promised,
                   delivered_date=delivered, qty_ordered=ordered,
                   qty_received=ordered if received is None else received, qty_rejected=rejected,
                   unit_price=Decimal(unit_price), contracted_price=Decimal(contracted_price))
    db.add(row)
    db.flush()
    return row


def inventory_item(db: Session, for_vendor: Vendor, *, on_hand: int, reorder_point: int, reorder_qty: int = 50,
                   unit_cost: str = "4.00", location: str = "MAIN") -> InventoryItem:
    n = next(_counter)
    row = InventoryItem(sku=f"SKU-{n:05d}", location=location, description=f"Item {n}", on_hand=on_hand,
                        reorder_point=reorder_point, reorder_qty=reorder_qty, unit_cost=Decimal(unit_cost),
                        vendor_id=for_vendor.id or 0)
    db.add(row)
    db.flush()
    return row


def facility(db: Session, *, occupants: list[Person], wardens: Sequence[Person] = ()) -> Facility:
    """A facility whose roster is `occupants` plus `wardens` (areas are floors, by order)."""
    n = next(_counter)
    row = Facility(code=f"F{n:03d}", name=f"Facility {n}", address=f"{n} Test Street")
    db.add(row)
    db.flush()
    for index, member in enumerate(occupants):
        db.add(RosterEntry(facility_id=row.id or 0, person_id=member.id or 0, area=f"Floor {index % 3 + 1}"))
    for member in wardens:
        db.add(RosterEntry(facility_id=row.id or 0, person_id=member.id or 0, role=RosterRole.warden,
                           area="Assembly point"))
    db.flush()
    return row


def continuity_plan(db: Session, *, owner: Person, at: Facility | None = None, rto_minutes: int = 15,
                    rpo_minutes: int = 60, review_cadence: str = "0 9 1 1 *",
                    last_reviewed_at: datetime | None = None) -> ContinuityPlan:
    n = next(_counter)
    row = ContinuityPlan(code=f"BCP-{n}", name=f"Continuity plan {n}", owner_id=owner.id,
                         facility_id=at.id if at else None, rto_minutes=rto_minutes, rpo_minutes=rpo_minutes,
                         review_cadence=review_cadence, last_reviewed_at=last_reviewed_at)
    db.add(row)
    db.flush()
    return row


def drill_program(db: Session, at: Facility, *, kind: str = "fire_evacuation", cadence: str = "0 10 1 3,9 *",
                  plan: ContinuityPlan | None = None, window_minutes: int = 20,
                  escalate_after_minutes: int = 5, measure: DrillMeasure = DrillMeasure.headcount) -> DrillProgram:
    row = DrillProgram(facility_id=at.id or 0, kind=kind, title=kind.replace("_", " ").capitalize(),
                       cadence=cadence, plan_id=plan.id if plan else None, window_minutes=window_minutes,
                       escalate_after_minutes=escalate_after_minutes, measure=measure)
    db.add(row)
    db.flush()
    return row


def csv_file(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """A CSV file as a spreadsheet exports it: a header row, then `rows`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def count(model: type) -> int:
    """How many rows the registry holds of `model`."""
    with registry_session() as db:
        return int(db.exec(select(func.count()).select_from(model)).one())


def cost_centre(db: Session, *, owner: Person, manager: Person | None = None, code: str | None = None) -> CostCentre:
    n = next(_counter)
    row = CostCentre(code=code or f"CC{n:03d}", name=f"Cost centre {n}", owner_id=owner.id or 0,
                     manager_id=manager.id if manager else None)
    db.add(row)
    db.flush()
    return row


def budget_line(db: Session, centre: CostCentre, month: date, amount: str | Decimal, *, account: str = "6000",
                version: int = 1, kind: LineKind = LineKind.expense) -> BudgetLine:
    row = BudgetLine(cost_centre_id=centre.id or 0, account=account, month=month, version=version, kind=kind,
                     amount=Decimal(amount))
    db.add(row)
    db.flush()
    return row


def actual(db: Session, centre: CostCentre, booked_on: date, amount: str | Decimal, *, account: str = "6000",
           reference: str | None = None) -> Actual:
    row = Actual(cost_centre_id=centre.id or 0, account=account, booked_on=booked_on, amount=Decimal(amount),
                 reference=reference or f"INV-{next(_counter):05d}")
    db.add(row)
    db.flush()
    return row


def purchase_request(db: Session, for_vendor: Vendor, amount: str | Decimal, *, centre: CostCentre | None = None,
                     account: str = "6000", status: RequestStatus = RequestStatus.approved,
                     created_at: datetime | None = None) -> PurchaseRequest:
    row = PurchaseRequest(key=f"PR-{next(_counter):05d}", vendor_id=for_vendor.id or 0,
                          requester_id=for_vendor.owner_id, amount=Decimal(amount), status=status,
                          cost_centre_id=centre.id if centre else None, account=account,
                          created_at=created_at or utcnow())
    db.add(row)
    db.flush()
    return row
