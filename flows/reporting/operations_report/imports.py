"""What `ops import kpis|kpi-measurements` accepts: KPI definitions and their measurements, from spreadsheets."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, col

from engine.importer import ImportKind, RowProblem, reference_by_code, register_kind, row_without, table_of
from registry import Direction, KpiDefinition, KpiMeasurement
from registry.people import ids_by_email

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class KpiRow(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    unit: str = Field(min_length=1, description="Shown after every figure: %, h, days, EUR, per week …")
    target: float
    direction: Direction = Field(description="higher or lower: which side of the target is better.")
    owner_email: str | None = Field(None, pattern=_EMAIL, description="Who answers for the KPI; a person already.")
    description: str = ""
    active: bool = True

    @field_validator("direction", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class KpiMeasurementRow(BaseModel):
    kpi_code: str = Field(min_length=1)
    measured_on: date = Field(description="The day the figure describes: the end of its week or month.")
    value: float
    note: str = ""

    @property
    def kpi_id(self) -> str:
        """The natural key's first part as the file names it (the code); it becomes the id when imported."""
        return self.kpi_code


def _kpi_owners(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                       list[RowProblem]]:
    kpis = [(n, cast(KpiRow, r)) for n, r in rows]
    known = ids_by_email(db, (r.owner_email for _, r in kpis if r.owner_email))
    resolved: dict[int, dict[str, Any]] = {}
    problems = []
    for number, row in kpis:
        owner = known.get(row.owner_email.lower()) if row.owner_email else None
        if row.owner_email and owner is None:
            problems.append(RowProblem(number, "owner_email", row.owner_email, "no such person in the registry"))
            continue
        resolved[number] = {"owner_id": owner}
    return resolved, problems


KPIS = register_kind(ImportKind(
    name="kpis", row_model=KpiRow, table=table_of(KpiDefinition), natural_key=("code",),
    to_record=row_without("owner_email"), references=_kpi_owners, multiline=frozenset({"description"}),
    description="code,name,unit,target,direction,owner_email,description,active"))
KPI_MEASUREMENTS = register_kind(ImportKind(
    name="kpi-measurements", row_model=KpiMeasurementRow, table=table_of(KpiMeasurement),
    natural_key=("kpi_id", "measured_on"), to_record=row_without("kpi_code"), references=reference_by_code(
        "kpi_code", col(KpiDefinition.code), col(KpiDefinition.id), into="kpi_id",
        missing="no such KPI; import the KPI definitions first"), multiline=frozenset({"note"}),
    description="kpi_code,measured_on,value,note"))
