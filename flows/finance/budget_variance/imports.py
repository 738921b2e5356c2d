"""What `ops import cost-centres|budget-lines|actuals` accepts: the finance system's cost centres, budgets and
ledger bookings, from spreadsheets.

A budget line is one month of one account in one cost centre, in one version: a revision is imported as the
next version, and a stored version is never changed by a file (the original budget stays what it was).
The kinds are registered by the process that declares them (Process.imports), not by importing this module.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select, tuple_
from sqlmodel import Session, col

from engine.importer import ImportKind, RowProblem, reference_by_code, row_without, table_of
from registry import Actual, BudgetLine, CostCentre, LineKind
from registry.people import ids_by_email

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class CostCentreRow(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    owner_email: str = Field(pattern=_EMAIL, description="Who answers for its budget; a person already.")
    manager_email: str | None = Field(None, pattern=_EMAIL,
                                      description="Who is escalated to; empty: the owner's manager.")
    active: bool = True


class BudgetLineRow(BaseModel):
    cost_centre_code: str = Field(min_length=1)
    account: str = Field(min_length=1, max_length=40)
    month: date = Field(description="The month budgeted: 2026-03 or 2026-03-01.")
    version: int = Field(1, ge=1, description="1: the original budget; a revision is the next version.")
    kind: LineKind = LineKind.expense
    amount: Decimal = Field(max_digits=14, decimal_places=2)

    @field_validator("month", mode="before")
    @classmethod
    def _month(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 7:
            value = f"{value}-01"
        if isinstance(value, str):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise ValueError("not a month: write it 2026-03 or 2026-03-01") from None
            if day.day != 1:
                raise ValueError(f"a budget is for a whole month: write {value[:7]} (or {value[:7]}-01)")
            return day
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def cost_centre_id(self) -> str:
        """The natural key's first part as the file names it (the code); it becomes the id when imported."""
        return self.cost_centre_code


class ActualRow(BaseModel):
    cost_centre_code: str = Field(min_length=1)
    account: str = Field(min_length=1, max_length=40)
    booked_on: date
    amount: Decimal = Field(max_digits=14, decimal_places=2)
    reference: str = Field(min_length=1, description="The ledger's document number; a purchase request's key "
                                                     "for its invoice.")

    @property
    def cost_centre_id(self) -> str:
        """The natural key's part as the file names it (the code); it becomes the id when imported."""
        return self.cost_centre_code


def _people(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                    list[RowProblem]]:
    centres = [(n, cast(CostCentreRow, r)) for n, r in rows]
    known = ids_by_email(db, [r.owner_email for _, r in centres] + [r.manager_email for _, r in centres
                                                                    if r.manager_email])
    resolved: dict[int, dict[str, Any]] = {}
    problems = []
    for number, row in centres:
        owner = known.get(row.owner_email.lower())
        manager = known.get(row.manager_email.lower()) if row.manager_email else None
        if owner is None:
            problems.append(RowProblem(number, "owner_email", row.owner_email, "no such person in the registry"))
        if row.manager_email and manager is None:
            problems.append(RowProblem(number, "manager_email", row.manager_email, "no such person in the registry"))
        resolved[number] = {"owner_id": owner, "manager_id": manager}
    return resolved, problems


_BY_CENTRE_CODE = reference_by_code("cost_centre_code", col(CostCentre.code), col(CostCentre.id),
                                    into="cost_centre_id", missing="no such cost centre; import cost centres first")


def _centres_and_kept_versions(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                                        list[RowProblem]]:
    """Each row's cost centre; a row that would change a stored version is a problem (a revision is a new
    version, so the original and every earlier revision stay as they were)."""
    resolved, problems = _BY_CENTRE_CODE(db, rows)
    lines = {number: cast(BudgetLineRow, row) for number, row in rows if number in resolved}
    keys = [(resolved[n]["cost_centre_id"], r.account, r.month, r.version) for n, r in lines.items()]
    table = table_of(BudgetLine)
    key_columns = (table.c.cost_centre_id, table.c.account, table.c.month, table.c.version)
    stored: dict[tuple[Any, ...], tuple[Decimal, str]] = {}
    for start in range(0, len(keys), 2000):
        chunk = keys[start:start + 2000]
        for *found, amount, kind in db.execute(select(*key_columns, table.c.amount, table.c.kind)
                                               .where(tuple_(*key_columns).in_(chunk))):
            stored[tuple(found)] = (Decimal(str(amount)), str(kind))
    for (number, row), key in zip(lines.items(), keys, strict=True):
        kept = stored.get(key)
        if kept is None:
            continue
        named = f"{row.cost_centre_code} {row.account} {row.month:%Y-%m} version {row.version}"
        if kept[0] != row.amount:
            problems.append(RowProblem(number, "amount", str(row.amount),
                                       f"{named} is stored as {kept[0]:.2f} and a budget version is never changed: "
                                       f"import the revision as version {row.version + 1} (or later)"))
        if kept[1] != row.kind:
            problems.append(RowProblem(number, "kind", str(row.kind),
                                       f"{named} is stored as {kept[1]}: a budget version is never changed"))
    return resolved, problems


COST_CENTRES = ImportKind(
    name="cost-centres", row_model=CostCentreRow, table=table_of(CostCentre), natural_key=("code",),
    to_record=row_without("owner_email", "manager_email"), references=_people,
    description="code,name,owner_email,manager_email,active")
BUDGET_LINES = ImportKind(
    name="budget-lines", row_model=BudgetLineRow, table=table_of(BudgetLine),
    natural_key=("cost_centre_id", "account", "month", "version"), to_record=row_without("cost_centre_code"),
    references=_centres_and_kept_versions,
    description="cost_centre_code,account,month,version,kind,amount")
ACTUALS = ImportKind(
    name="actuals", row_model=ActualRow, table=table_of(Actual), natural_key=("reference", "cost_centre_id", "account"),
    to_record=row_without("cost_centre_code"), references=_BY_CENTRE_CODE,
    description="cost_centre_code,account,booked_on,amount,reference")
