"""What `ops import risk-categories|risks` accepts: the risk register from a spreadsheet.

- `risk-categories`: code,name,appetite,description — the appetite is a level name (Low, Medium, High, Critical
  on the default matrix): the highest residual level the category accepts without the Director.
- `risks`: code,title,category,owner_email,cause,event,consequence,matrix,inherent_likelihood,inherent_impact,
  residual_likelihood,residual_impact,treatment,treatment_plan,controls,kri,last_reviewed,active
  - `matrix` is a matrix code (empty: the default matrix; a stored risk keeps its own).
  - Scores are a position on the matrix's axis (1 = the lowest) or its label ("Likely", "Major"). A new risk
    needs all four; a stored risk's scores change only through a re-score in risk-review, so a file may repeat
    them or leave them empty, not change them.
  - `controls` lists controls by ref, separated by ";" ("AC-1;BK-1"; "Framework/AC-1" when two frameworks share
    the ref); `kri` lists KPIs used as key risk indicators, each a KPI code, ">" (a breach is above) or "<"
    (below) and a threshold ("OTD<90;IRT>6"). The risk's links become exactly those listed; an empty cell leaves
    a stored risk's links as they are, and "-" removes them all.
  - `last_reviewed` (YYYY-MM-DD) is read for a new risk only: the day it was last reviewed before it came into
    the register. The import then writes the risk's first assessment (reason "import", dated that day or now)
    and schedules its next review by its residual level's cadence from then; later reviews keep both.
The whole file is refused, every bad row named, and the same file twice changes nothing. The kinds are registered
by the process that declares them (Process.imports), not by importing this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, insert, select, update
from sqlmodel import Session, col

from engine.deadlines import next_due
from engine.importer import Imported, ImportKind, RowProblem, table_of
from engine.settings import get_settings
from flows.risk.risk_review import rules
from flows.risk.risk_review.register import matrices
from registry import (
    Control,
    Framework,
    KpiDefinition,
    Risk,
    RiskAssessment,
    RiskCategory,
    RiskControl,
    RiskIndicator,
    RiskLevel,
    RiskMatrix,
    Treatment,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import ids_by_email

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NONE = "-"  # a links cell that removes every link of the risk
SCORES = rules.SCORES
_KRI = re.compile(r"^\s*([^<>\s]+)\s*([<>])\s*(-?\d+(?:\.\d+)?)\s*$")
ACTOR = "import"


class RiskCategoryRow(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    appetite: str = Field(min_length=1, description="A level name: the highest residual level accepted.")
    description: str = ""


@dataclass(frozen=True)
class KriSpec:
    kpi_code: str
    breach_when: str
    threshold: float


def _listed(value: Any) -> Any:
    """A ;-separated cell as a list (blank items dropped); "-" as the empty list (remove every link)."""
    if not isinstance(value, str):
        return value
    if value.strip() == NONE:
        return []
    return [item.strip() for item in value.split(";") if item.strip()]


class RiskRow(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1)
    category: str = Field(min_length=1, description="The category's code; import risk-categories first.")
    owner_email: str = Field(pattern=_EMAIL, description="Who owns the risk; must already be a person.")
    cause: str = ""
    event: str = ""
    consequence: str = ""
    matrix: str | None = Field(None, description="A matrix code; empty: the default matrix.")
    inherent_likelihood: str | None = None
    inherent_impact: str | None = None
    residual_likelihood: str | None = None
    residual_impact: str | None = None
    treatment: Treatment = Treatment.reduce
    treatment_plan: str = ""
    controls: list[str] | None = Field(None, description="Control refs separated by ';', '-' for none.")
    kri: list[KriSpec] | None = Field(None, description="KPI code, > or <, threshold; separated by ';'.")
    last_reviewed: date | None = None
    active: bool = True

    @field_validator("treatment", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("controls", mode="before")
    @classmethod
    def _controls(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("kri", mode="before")
    @classmethod
    def _kri(cls, value: Any) -> Any:
        items = _listed(value)
        if not isinstance(items, list):
            return items
        specs, seen = [], set()
        for item in items:
            if isinstance(item, KriSpec):
                specs.append(item)
                continue
            found = _KRI.match(str(item))
            if found is None:
                raise ValueError(f"{item!r} is not a KPI code, > or < and a threshold (e.g. OTD<90 or IRT>6)")
            code, side, threshold = found.groups()
            if code in seen:
                raise ValueError(f"KPI {code} is listed twice")
            seen.add(code)
            specs.append(KriSpec(code, "above" if side == ">" else "below", float(threshold)))
        return specs


def _appetites(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                      list[RowProblem]]:
    known = set(db.execute(select(col(RiskLevel.name)).distinct()).scalars())
    levels = ", ".join(sorted(known))
    problems = [RowProblem(number, "appetite", row.appetite, f"not a risk level; the levels: {levels}")
                for number, row in ((n, cast(RiskCategoryRow, r)) for n, r in rows) if row.appetite not in known]
    return {}, problems


def _category_record(row: BaseModel, _refs: dict[str, Any]) -> dict[str, Any]:
    return cast(RiskCategoryRow, row).model_dump()


RISK_CATEGORIES = ImportKind(
    name="risk-categories", row_model=RiskCategoryRow, table=table_of(RiskCategory), natural_key=("code",),
    to_record=_category_record, references=_appetites, multiline=frozenset({"description"}),
    description="code,name,appetite,description")


def _score(matrix: rules.Matrix, axis: str, value: str) -> int | None:
    """A score cell as a position on the axis: a number from 1, or one of the axis' labels (any case)."""
    labels = matrix.likelihoods if axis == "likelihood" else matrix.impacts
    if value.isdigit():
        position = int(value)
        return position if 1 <= position <= len(labels) else None
    by_label = {label.lower(): n for n, label in enumerate(labels, start=1)}
    return by_label.get(value.strip().lower())


def _review_moment(day: date) -> datetime:
    """A review day as the moment reviews are dated: 09:00 in the organisation's time zone."""
    return as_utc(datetime.combine(day, time(9), tzinfo=ZoneInfo(get_settings().timezone)))


@dataclass
class _Lookups:
    categories: dict[str, tuple[int, str]]
    owners: dict[str, int]
    matrix_ids: dict[str, int]
    default_matrix: int | None
    grids: dict[int, rules.Matrix]
    stored: dict[str, Any]
    controls: dict[str, list[tuple[int, str]]]
    kpis: dict[str, int]


def _lookups(db: Session, risks: list[tuple[int, RiskRow]]) -> _Lookups:
    """Everything the rows name, each kind in one query."""
    codes = {row.code for _, row in risks}
    categories = {code: (cid, appetite) for code, cid, appetite in db.execute(
        select(col(RiskCategory.code), col(RiskCategory.id), col(RiskCategory.appetite))
        .where(col(RiskCategory.code).in_({row.category for _, row in risks})))}
    matrix_rows = list(db.execute(select(col(RiskMatrix.code), col(RiskMatrix.id), col(RiskMatrix.is_default))))
    stored = {risk.code: risk for risk in db.execute(select(Risk).where(col(Risk.code).in_(codes))).scalars()}
    refs = {ref for _, row in risks for ref in row.controls or []}
    controls: dict[str, list[tuple[int, str]]] = {}
    if refs:
        wanted = {ref.rsplit("/", 1)[-1] for ref in refs}
        for cid, ref, framework in db.execute(
                select(col(Control.id), col(Control.ref), col(Framework.name))
                .join(Framework, col(Framework.id) == Control.framework_id)
                .where(col(Control.ref).in_(wanted), col(Control.active).is_(True))):
            controls.setdefault(ref, []).append((cid, framework))
    kpi_codes = {spec.kpi_code for _, row in risks for spec in row.kri or []}
    kpis = {code: kid for code, kid in db.execute(select(col(KpiDefinition.code), col(KpiDefinition.id))
                                                  .where(col(KpiDefinition.code).in_(kpi_codes)))} if kpi_codes else {}
    return _Lookups(categories, ids_by_email(db, (row.owner_email for _, row in risks)),
                    {code: mid for code, mid, _ in matrix_rows},
                    next((mid for _, mid, default in matrix_rows if default), None), matrices(db), stored, controls,
                    kpis)


def _control_ids(refs: Iterable[str], known: dict[str, list[tuple[int, str]]]) -> tuple[list[int], list[str]]:
    """Control ids for refs ("AC-1", or "Framework/AC-1"), and why each ref that names no one control fails."""
    ids, problems = [], []
    for ref in refs:
        framework, _, bare = ref.rpartition("/")
        found = [(cid, name) for cid, name in known.get(bare, []) if not framework or name == framework]
        if not found:
            problems.append(f"{ref}: no such active control")
        elif len(found) > 1:
            problems.append(f"{ref} is a control of {len(found)} frameworks ({', '.join(n for _, n in found)}): "
                            f"write it as '{found[0][1]}/{bare}'")
        else:
            ids.append(found[0][0])
    return ids, problems


def _risk_references(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                            list[RowProblem]]:
    risks = [(n, cast(RiskRow, r)) for n, r in rows]
    found = _lookups(db, risks)
    resolved: dict[int, dict[str, Any]] = {}
    problems: list[RowProblem] = []
    for number, row in risks:
        bad = len(problems)
        stored = found.stored.get(row.code)
        category = found.categories.get(row.category)
        if category is None:
            problems.append(RowProblem(number, "category", row.category, "no such risk category; import "
                                                                         "risk-categories first"))
        owner = found.owners.get(row.owner_email.lower())
        if owner is None:
            problems.append(RowProblem(number, "owner_email", row.owner_email, "no such person in the registry"))
        matrix_id = found.matrix_ids.get(row.matrix) if row.matrix else (
            stored.matrix_id if stored is not None else found.default_matrix)
        if matrix_id is None:
            problems.append(RowProblem(number, "matrix", row.matrix or "", "no such risk matrix" if row.matrix
                                       else "no default risk matrix in the registry: name one"))
            continue
        if stored is not None and matrix_id != stored.matrix_id:
            problems.append(RowProblem(number, "matrix", row.matrix or "", "a risk stays on the matrix it was "
                                                                           "first scored on"))
            continue
        grid = found.grids[matrix_id]
        if category is not None and not any(level.name == category[1] for level in grid.levels):
            problems.append(RowProblem(number, "category", row.category,
                                       f"its appetite {category[1]!r} is no level of matrix {grid.code} "
                                       f"({', '.join(lv.name for lv in grid.levels)})"))
        scores: dict[str, int | None] = {}
        for name in SCORES:
            cell = getattr(row, name)
            axis = name.rsplit("_", 1)[1]
            if cell is None:
                if stored is None:
                    problems.append(RowProblem(number, name, "", "a new risk needs all four scores"))
                scores[name] = None  # a stored risk keeps its own (approval_only)
                continue
            scores[name] = _score(grid, axis, cell)
            if scores[name] is None:
                labels = grid.likelihoods if axis == "likelihood" else grid.impacts
                problems.append(RowProblem(number, name, cell, f"not on matrix {grid.code}'s {axis} scale: 1 to "
                                                               f"{len(labels)} or one of {', '.join(labels)}"))
        if len(problems) > bad:
            continue
        final: dict[str, int] = {name: given if (given := scores[name]) is not None else getattr(stored, name)
                                 for name in SCORES}
        for axis in ("likelihood", "impact"):
            if final[f"residual_{axis}"] > final[f"inherent_{axis}"]:
                problems.append(RowProblem(number, f"residual_{axis}", str(getattr(row, f"residual_{axis}") or ""),
                                           f"above the inherent {axis} ({final[f'inherent_{axis}']}): controls "
                                           "do not make a risk likelier or larger"))
        _, control_problems = _control_ids(row.controls or [], found.controls)
        problems += [RowProblem(number, "controls", ";".join(row.controls or []), why) for why in control_problems]
        problems += [RowProblem(number, "kri", f"{s.kpi_code}", "no such KPI; import the KPIs first")
                     for s in row.kri or [] if s.kpi_code not in found.kpis]
        if len(problems) > bad:
            continue
        if stored is None:
            reviewed = _review_moment(row.last_reviewed) if row.last_reviewed else None
            residual = rules.level_of(grid, final["residual_likelihood"], final["residual_impact"])
            last, following = reviewed, next_due(residual.review_cadence, reviewed or utcnow(),
                                                 get_settings().timezone)
        else:
            last, following = stored.last_reviewed_at, stored.next_review_at
        resolved[number] = {"category_id": category[0] if category else 0, "owner_id": owner, "matrix_id": matrix_id,
                            **scores, "last_reviewed_at": last, "next_review_at": following}
    return resolved, problems


def _risk_record(row: BaseModel, refs: dict[str, Any]) -> dict[str, Any]:
    r = cast(RiskRow, row)
    return {"code": r.code, "title": r.title, "cause": r.cause, "event": r.event, "consequence": r.consequence,
            "treatment": r.treatment, "treatment_plan": r.treatment_plan, "active": r.active, **refs}


def _then_risks(db: Session, imported: list[Imported]) -> set[int]:
    """The risks' controls and KRIs as the file lists them, and the first assessment of each risk without one."""
    ids = [i.id for i in imported]
    rows = {i.id: cast(RiskRow, i.row) for i in imported}
    lines = {i.id: i.line for i in imported}
    changed: set[int] = set()
    entries: list[trail.Entry] = []
    found = _lookups(db, [(i.line, cast(RiskRow, i.row)) for i in imported])

    linked: dict[int, set[int]] = {}
    for risk_id, control_id in db.execute(select(col(RiskControl.risk_id), col(RiskControl.control_id))
                                          .where(col(RiskControl.risk_id).in_(ids))):
        linked.setdefault(risk_id, set()).add(control_id)
    indicators: dict[int, dict[int, RiskIndicator]] = {}
    for indicator in db.execute(select(RiskIndicator).where(col(RiskIndicator.risk_id).in_(ids))).scalars():
        indicators.setdefault(indicator.risk_id, {})[indicator.kpi_id] = indicator
    for risk_id, row in rows.items():
        change: dict[str, Any] = {}
        if row.controls is not None:
            wanted = set(_control_ids(row.controls, found.controls)[0])
            have = linked.get(risk_id, set())
            if wanted - have:
                db.execute(insert(RiskControl), [{"risk_id": risk_id, "control_id": c} for c in sorted(wanted - have)])
            if have - wanted:
                db.execute(delete(RiskControl).where(col(RiskControl.risk_id) == risk_id,
                                                     col(RiskControl.control_id).in_(have - wanted)))
            if wanted != have:
                change["controls"] = {"added": sorted(wanted - have), "removed": sorted(have - wanted)}
        if row.kri is not None:
            have_kri = indicators.get(risk_id, {})
            wanted_kri = {found.kpis[s.kpi_code]: s for s in row.kri}
            for kpi_id, spec in wanted_kri.items():
                current = have_kri.get(kpi_id)
                if current is None:
                    db.execute(insert(RiskIndicator).values(risk_id=risk_id, kpi_id=kpi_id, threshold=spec.threshold,
                                                            breach_when=spec.breach_when))
                elif (current.threshold, current.breach_when) != (spec.threshold, spec.breach_when):
                    db.execute(update(RiskIndicator).where(col(RiskIndicator.id) == current.id)
                               .values(threshold=spec.threshold, breach_when=spec.breach_when))
                else:
                    continue
                change.setdefault("kri", []).append(f"{spec.kpi_code} {spec.breach_when} {spec.threshold:g}")
            gone = set(have_kri) - set(wanted_kri)
            if gone:
                db.execute(delete(RiskIndicator).where(col(RiskIndicator.risk_id) == risk_id,
                                                       col(RiskIndicator.kpi_id).in_(gone)))
                change.setdefault("kri_removed", sorted(gone))
        if change:
            changed.add(lines[risk_id])
            entries.append(trail.Entry(actor=ACTOR, action="risk.links_imported", entity_type="risk",
                                       entity_id=risk_id, data={"code": row.code, **change}))

    assessed = set(db.execute(select(col(RiskAssessment.risk_id)).where(col(RiskAssessment.risk_id).in_(ids))
                              .group_by(col(RiskAssessment.risk_id))).scalars())
    first = []
    for risk in db.execute(select(Risk).where(col(Risk.id).in_(set(ids) - assessed))).scalars():
        scores = rules.Scores(risk.inherent_likelihood, risk.inherent_impact, risk.residual_likelihood,
                              risk.residual_impact)
        inherent, residual = rules.levels_of(found.grids[risk.matrix_id], scores)
        first.append({"risk_id": risk.id, **dict(zip(SCORES, scores.as_tuple(), strict=True)),
                      "inherent_level": inherent.name, "residual_level": residual.name, "rationale": "",
                      "reason": "import", "assessed_at": risk.last_reviewed_at or utcnow(), "changed": True,
                      "step_id": None, "assessed_by_id": None})
        changed.add(lines[risk.id or 0])
    if first:
        db.execute(insert(RiskAssessment), first)
    if entries:
        trail.record_many(db, entries)
    return changed


RISKS = ImportKind(
    name="risks", row_model=RiskRow, table=table_of(Risk), natural_key=("code",), to_record=_risk_record,
    references=_risk_references, then=_then_risks,
    multiline=frozenset({"cause", "event", "consequence", "treatment_plan"}),
    approval_only={name: "scores change only through a re-score in risk-review (ops run risk-review with "
                         "risk_code set to the risk)" for name in SCORES},
    description="code,title,category,owner_email,cause,event,consequence,matrix,inherent_likelihood,"
                "inherent_impact,residual_likelihood,residual_impact,treatment,treatment_plan,controls,kri,"
                "last_reviewed,active")
