"""What `ops import vendors|deliveries|inventory` accepts: one row model per kind, looked up and upserted."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.importer import ImportKind, RowProblem, register_kind, row_without, table_of
from registry import Delivery, InventoryItem, Person, Standing, Vendor
from registry.validation import check_cron

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class VendorRow(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    owner_email: str = Field(pattern=_EMAIL, description="The vendor manager; must already be a person.")
    contact_email: str | None = Field(None, pattern=_EMAIL, description="Where purchase orders go.")
    contact_name: str | None = None
    standing: Standing = Standing.approved
    review_cadence: str = "0 7 1 1,4,7,10 *"
    contract_end: date | None = None

    @field_validator("review_cadence")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            check_cron("Vendor", "review_cadence", value)
        except ValueError:
            raise ValueError("not a valid cron expression (e.g. '0 7 1 1,4,7,10 *')") from None
        return value


class DeliveryRow(BaseModel):
    po_number: str = Field(min_length=1)
    line: int = Field(ge=1)
    vendor_code: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    promised_date: date
    delivered_date: date | None = None
    qty_ordered: int = Field(gt=0)
    qty_received: int = Field(0, ge=0)
    qty_rejected: int = Field(0, ge=0)
    unit_price: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    contracted_price: Decimal = Field(ge=0, max_digits=14, decimal_places=4)

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryRow:
        if self.qty_rejected > self.qty_received:
            raise ValueError(f"qty_rejected: more than the {self.qty_received} received")
        if self.delivered_date is None and self.qty_received:
            raise ValueError("qty_received: goods received but no delivered_date")
        return self


class InventoryRow(BaseModel):
    sku: str = Field(min_length=1)
    location: str = Field(min_length=1)
    description: str = ""
    on_hand: int = Field(ge=0)
    reorder_point: int = Field(ge=0)
    reorder_qty: int = Field(gt=0)
    lead_time_days: int = Field(7, ge=0)
    unit_cost: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    vendor_code: str = Field(min_length=1)


def _vendor_ids(db: Session, codes: set[str]) -> dict[str, int]:
    if not codes:
        return {}
    found = db.exec(select(Vendor.code, Vendor.id).where(col(Vendor.code).in_(codes)))
    return {code: vendor_id for code, vendor_id in found if vendor_id is not None}


def _by_vendor_code(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                          list[RowProblem]]:
    codes = {cast(Any, row).vendor_code for _, row in rows}
    known = _vendor_ids(db, codes)
    resolved, problems = {}, []
    for number, row in rows:
        code = cast(Any, row).vendor_code
        if code in known:
            resolved[number] = {"vendor_id": known[code]}
        else:
            problems.append(RowProblem(number, "vendor_code", code, "no such vendor; import vendors first"))
    return resolved, problems


def _vendor_people(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                         list[RowProblem]]:
    vendors = [(n, cast(VendorRow, r)) for n, r in rows]
    emails = {r.owner_email.lower() for _, r in vendors} | {r.contact_email.lower() for _, r in vendors
                                                             if r.contact_email}
    people = {email: pid for email, pid in db.exec(
        select(func.lower(Person.email), Person.id).where(func.lower(Person.email).in_(emails)))} if emails else {}
    resolved, problems = {}, []
    for number, row in vendors:
        owner = people.get(row.owner_email.lower())
        if owner is None:
            problems.append(RowProblem(number, "owner_email", row.owner_email, "no such person in the registry"))
            continue
        contact = people.get(row.contact_email.lower()) if row.contact_email else None
        if row.contact_email and contact is None:
            # Vendor contacts are outside the organisation: they become people so messages can reach them.
            person = Person(name=row.contact_name or f"{row.name} orders", email=row.contact_email)
            db.add(person)
            db.flush()
            contact = people[row.contact_email.lower()] = person.id
        resolved[number] = {"owner_id": owner, "contact_id": contact}
    return resolved, problems


def _vendor_record(row: BaseModel, refs: dict[str, Any]) -> dict[str, Any]:
    v = cast(VendorRow, row)
    return {"code": v.code, "name": v.name, "standing": v.standing, "review_cadence": v.review_cadence,
            "contract_end": v.contract_end, "active": True, **refs}


VENDORS = register_kind(ImportKind(
    name="vendors", row_model=VendorRow, table=table_of(Vendor), natural_key=("code",),
    to_record=_vendor_record, references=_vendor_people,
    description="code,name,owner_email,contact_email,contact_name,standing,review_cadence,contract_end"))
DELIVERIES = register_kind(ImportKind(
    name="deliveries", row_model=DeliveryRow, table=table_of(Delivery), natural_key=("po_number", "line"),
    to_record=row_without("vendor_code"), references=_by_vendor_code,
    description="po_number,line,vendor_code,sku,promised_date,delivered_date,qty_ordered,qty_received,"
                "qty_rejected,unit_price,contracted_price"))
INVENTORY = register_kind(ImportKind(
    name="inventory", row_model=InventoryRow, table=table_of(InventoryItem), natural_key=("sku", "location"),
    to_record=row_without("vendor_code"), references=_by_vendor_code,
    description="sku,location,description,on_hand,reorder_point,reorder_qty,lead_time_days,unit_cost,vendor_code"))
