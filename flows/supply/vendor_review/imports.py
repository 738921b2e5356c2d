"""What `ops import vendors|deliveries` accepts: one row model per kind, looked up and upserted."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlmodel import Session, col, select

from engine.importer import ImportKind, RowProblem, reference_by_code, register_kind, row_without, table_of
from registry import CostCentre, Delivery, Person, Standing, Vendor
from registry.people import ids_by_email
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
    cost_centre_code: str | None = Field(None, description="Where a reorder from the vendor is charged.")
    account: str = Field("", max_length=40, description="The account a reorder is charged to.")

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


_BY_VENDOR_CODE = reference_by_code("vendor_code", col(Vendor.code), col(Vendor.id), into="vendor_id",
                                   missing="no such vendor; import vendors first")


def _vendor_people(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                         list[RowProblem]]:
    vendors = [(n, cast(VendorRow, r)) for n, r in rows]
    people = ids_by_email(db, [r.owner_email for _, r in vendors] + [r.contact_email for _, r in vendors
                                                                      if r.contact_email])
    codes = {r.cost_centre_code for _, r in vendors if r.cost_centre_code}
    centres = {code: centre for code, centre in db.exec(
        select(CostCentre.code, CostCentre.id).where(col(CostCentre.code).in_(codes)))} if codes else {}
    resolved, problems = {}, []
    for number, row in vendors:
        centre = centres.get(row.cost_centre_code) if row.cost_centre_code else None
        if row.cost_centre_code and centre is None:
            problems.append(RowProblem(number, "cost_centre_code", row.cost_centre_code,
                                       "no such cost centre; import cost centres first"))
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
            contact = people[row.contact_email.lower()] = person.id or 0
        resolved[number] = {"owner_id": owner, "contact_id": contact, "cost_centre_id": centre}
    return resolved, problems


def _vendor_record(row: BaseModel, refs: dict[str, Any]) -> dict[str, Any]:
    v = cast(VendorRow, row)
    return {"code": v.code, "name": v.name, "standing": v.standing, "review_cadence": v.review_cadence,
            "contract_end": v.contract_end, "account": v.account, "active": True, **refs}


VENDORS = register_kind(ImportKind(
    name="vendors", row_model=VendorRow, table=table_of(Vendor), natural_key=("code",),
    to_record=_vendor_record, references=_vendor_people,
    # vendor-review changes a standing only once the procurement manager approves it (flows/supply/vendor_review/).
    approval_only={"standing": "a standing changes only through vendor-review, once the procurement manager "
                               "approves the change it proposes (ops run vendor-review)"},
    description="code,name,owner_email,contact_email,contact_name,standing,review_cadence,contract_end,"
                "cost_centre_code,account"))
DELIVERIES = register_kind(ImportKind(
    name="deliveries", row_model=DeliveryRow, table=table_of(Delivery), natural_key=("po_number", "line"),
    to_record=row_without("vendor_code"), references=_BY_VENDOR_CODE,
    description="po_number,line,vendor_code,sku,promised_date,delivered_date,qty_ordered,qty_received,"
                "qty_rejected,unit_price,contracted_price"))
