"""CSV import: every row validated first, the whole file refused if any row is bad, then one upsert.

A kind says how a CSV row becomes a registry row: a pydantic row model, the table, its natural key, and how
references (a vendor code, an e-mail) are looked up. Importing the same file twice changes nothing: rows equal
to what is stored are not written at all.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, insert, select, tuple_, update
from sqlmodel import Session

from registry import session, trail

_BATCH = 2000


@dataclass(frozen=True)
class RowProblem:
    line: int
    column: str
    value: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}, value {self.value!r}: {self.why}"


class ImportRefused(ValueError):
    """The file was refused whole; `problems` lists every bad row and nothing was written."""

    def __init__(self, path: Path, problems: list[RowProblem]) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path.name}: {len(problems)} problem(s), nothing imported:\n  {shown}{more}")


# Resolves the columns that name other rows (a code, an e-mail) into ids; unresolvable ones are row problems.
References = Callable[[Session, list[tuple[int, BaseModel]]], tuple[dict[int, dict[str, Any]], list[RowProblem]]]


@dataclass(frozen=True)
class ImportKind:
    """How one kind of CSV maps onto one table."""

    name: str
    row_model: type[BaseModel]
    table: Table
    natural_key: tuple[str, ...]
    to_record: Callable[[BaseModel, dict[str, Any]], dict[str, Any]]
    references: References
    description: str = ""


_KINDS: dict[str, ImportKind] = {}


def table_of(model: type) -> Table:
    """The Core table behind an SQLModel table class: imports write with Core statements, in bulk."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def row_without(*columns: str) -> Callable[[BaseModel, dict[str, Any]], dict[str, Any]]:
    """A `to_record` for rows that map field for field, but for the `columns` that name other rows (an e-mail,
    a code), which `references` has resolved into ids."""
    dropped = set(columns)

    def to_record(row: BaseModel, refs: dict[str, Any]) -> dict[str, Any]:
        return {**row.model_dump(exclude=dropped), **refs}

    return to_record


def reference_by_code(field: str, code: Any, key: Any, *, into: str, missing: str) -> References:
    """A `references` for a column naming another row by its code (`field`): each code resolved to that row's
    `key` as `into`, in one query; an unknown code is a problem of its row, saying `missing`."""

    def resolve(db: Session, rows: list[tuple[int, BaseModel]]) -> tuple[dict[int, dict[str, Any]],
                                                                          list[RowProblem]]:
        codes = {getattr(row, field) for _, row in rows}
        known = {found: ref for found, ref in db.execute(select(code, key).where(code.in_(codes)))} if codes else {}
        resolved: dict[int, dict[str, Any]] = {}
        problems: list[RowProblem] = []
        for number, row in rows:
            value = getattr(row, field)
            if value in known:
                resolved[number] = {into: known[value]}
            else:
                problems.append(RowProblem(number, field, value, missing))
        return resolved, problems

    return resolve


def register_kind(kind: ImportKind) -> ImportKind:
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, ImportKind]:
    return dict(_KINDS)


@dataclass
class ImportReport:
    kind: str
    rows: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    sha256: str = ""
    problems: list[RowProblem] = field(default_factory=list)


class Progress(Protocol):
    def advance(self, rows: int) -> None: ...


@contextmanager
def _no_progress(_total: int) -> Iterator[Progress]:
    class _Silent:
        def advance(self, rows: int) -> None:
            pass

    yield _Silent()


def _parse(kind: ImportKind, path: Path, progress: Progress) -> tuple[list[tuple[int, BaseModel]], list[RowProblem]]:
    rows: list[tuple[int, BaseModel]] = []
    problems: list[RowProblem] = []
    expected = set(kind.row_model.model_fields)
    seen: dict[tuple[Any, ...], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or [])
        missing = sorted(name for name, f in kind.row_model.model_fields.items()
                         if f.is_required() and name not in header)
        if missing:
            return [], [RowProblem(1, ", ".join(missing), "", "required column missing from the header")]
        unknown = sorted(header - expected)
        if unknown:
            problems.append(RowProblem(1, ", ".join(unknown), "", f"unknown column; expected {sorted(expected)}"))
        for number, raw in enumerate(reader, start=2):
            progress.advance(1)
            values = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k in expected}
            values = {k: v for k, v in values.items() if v not in ("", None)}
            try:
                row = kind.row_model.model_validate(values)
            except ValidationError as error:
                for item in error.errors():
                    why = item["msg"].removeprefix("Value error, ")
                    column = str(item["loc"][0]) if item["loc"] else "(row)"
                    named, _, rest = why.partition(": ")
                    if column == "(row)" and named in expected:  # a whole-row rule names its column first
                        column, why = named, rest
                    problems.append(RowProblem(number, column, str(raw.get(column, "")), why))
                continue
            key = tuple(getattr(row, k) for k in kind.natural_key)
            if key in seen:
                problems.append(RowProblem(number, ", ".join(kind.natural_key), " / ".join(map(str, key)),
                                           f"same key as line {seen[key]}"))
                continue
            seen[key] = number
            rows.append((number, row))
    return rows, problems


def _existing(db: Session, kind: ImportKind, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    table, columns = kind.table, [kind.table.c[k] for k in kind.natural_key]
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for start in range(0, len(keys), _BATCH):
        chunk = keys[start:start + _BATCH]
        for record in db.execute(select(table).where(tuple_(*columns).in_(chunk))).mappings():
            found[tuple(record[k] for k in kind.natural_key)] = dict(record)
    return found


def import_csv(kind_name: str, path: Path, *, actor: str = "import", dry_run: bool = False,
               progress: Callable[[int], Any] | None = None) -> ImportReport:
    """Validate every row of `path`, then upsert them all in one transaction; refuse the whole file on any problem."""
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise ValueError(f"unknown import kind {kind_name!r}; known: {', '.join(sorted(_KINDS))}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    content = path.read_bytes()
    total = max(content.count(b"\n") - 1, 0)
    with (progress or _no_progress)(total) as bar:
        rows, problems = _parse(kind, path, bar)
    report = ImportReport(kind=kind.name, rows=len(rows) + len({p.line for p in problems if p.line > 1}),
                          sha256=hashlib.sha256(content).hexdigest())
    with session() as db:
        resolved, reference_problems = kind.references(db, rows)
        problems += reference_problems
        if problems:
            raise ImportRefused(path, sorted(problems, key=lambda p: (p.line, p.column)))
        records = [kind.to_record(row, resolved.get(number, {})) for number, row in rows]
        stored = _existing(db, kind, [tuple(r[k] for k in kind.natural_key) for r in records])
        new, changed = [], []
        for record in records:
            before = stored.get(tuple(record[k] for k in kind.natural_key))
            if before is None:
                new.append(record)
            elif any(before.get(k) != v for k, v in record.items()):
                changed.append({**record, "id": before["id"]})
        report.inserted, report.updated = len(new), len(changed)
        report.unchanged = len(records) - len(new) - len(changed)
        if dry_run:
            db.rollback()
            return report
        for start in range(0, len(new), _BATCH):
            db.execute(insert(kind.table), new[start:start + _BATCH])
        for record in changed:
            db.execute(update(kind.table).where(kind.table.c.id == record["id"]).values(**record))
        if new or changed:
            trail.record(db, actor=actor, action="import.applied", entity_type=kind.table.name, entity_id=0,
                         data={"file": path.name, "sha256": report.sha256, "rows": len(records),
                               "inserted": report.inserted, "updated": report.updated})
    return report
