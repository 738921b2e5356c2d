"""CSV import: every row validated first, the whole file refused if any row is bad, then one upsert.

A kind says how a CSV row becomes a registry row: a pydantic row model, the table, its natural key, and how
references (a vendor code, an e-mail) are looked up. Importing the same file twice changes nothing: rows equal
to what is stored are not written at all. Every row that is changed leaves one trail event with each changed
field's before and after; a field only an approval may change (`approval_only`) is refused, not overwritten.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, bindparam, insert, select, tuple_, update
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
class Imported:
    """One row of the file as stored: its line, the row read, the stored row's id, and whether it was new."""

    line: int
    row: BaseModel
    id: int
    inserted: bool


# What a kind writes besides its own table once every row is stored (a risk's controls, its first assessment),
# in the same transaction; it returns the lines it changed something for, which then count as updated.
Then = Callable[[Session, list[Imported]], set[int]]


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
    multiline: frozenset[str] = frozenset()
    """Free-text columns whose quoted values may hold line breaks; elsewhere a line break is a misplaced quote."""
    approval_only: dict[str, str] = field(default_factory=dict)
    """Columns only a process changes, after an approval: column → what to use instead (shown in the refusal).
    A new row may set them; a file changing them on a stored row is refused; left empty, the stored value stays."""
    then: Then | None = None
    """Rows of other tables a row brings with it, written after the upsert; the same file twice must change
    nothing there either (it returns no line then)."""


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


def _text(path: Path, content: bytes) -> str:
    """The file as text; a file that is not UTF-8 is refused naming the first line that is not."""
    body = content.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        start = body.rfind(b"\n", 0, error.start) + 1
        end = body.find(b"\n", error.start)
        shown = body[start:end if end >= 0 else len(body)].decode("utf-8", errors="replace").strip()
        raise ImportRefused(path, [RowProblem(
            body.count(b"\n", 0, error.start) + 1, "(file)", shown,
            f"byte 0x{body[error.start]:02x} is not UTF-8 (the file is probably Latin-1 or Windows-1252): save it "
            "as UTF-8 (in Excel: Save As, \"CSV UTF-8\"; in LibreOffice: character set Unicode (UTF-8)) and "
            "import it again")]) from None


def _broken_quote(line: int, error: csv.Error) -> RowProblem:
    if str(error).startswith(("unexpected end of data", "field larger than field limit")):
        why = (f"a quote opened on line {line} is never closed, so the rest of the file reads as one value: close "
               f"the quote opened on line {line} (a value holding a comma or a line break is written \"like, "
               "this\"; a quote inside it is doubled \"\") or remove it")
    else:
        why = (f"a quoted value ends in the middle of a field ({error}): on line {line}, close the quote right "
               "before the comma, or double a quote meant inside the value (\"\")")
    return RowProblem(line, "(row)", "", why)


def _records(reader: Iterator[list[str]], line: Callable[[], int], names: list[str],
             problems: list[RowProblem]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Each record with the lines it starts and ends on: a quoted value may hold line breaks, a blank line none."""
    while True:
        start = line() + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append(_broken_quote(start, error))
            return
        if values:
            yield start, line(), dict(zip(names, values, strict=False))


def _parse(kind: ImportKind, path: Path, text: str,
           progress: Progress) -> tuple[list[tuple[int, BaseModel]], list[RowProblem]]:
    rows: list[tuple[int, BaseModel]] = []
    problems: list[RowProblem] = []
    expected = set(kind.row_model.model_fields)
    seen: dict[tuple[Any, ...], int] = {}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        names = next(reader, [])
    except csv.Error as error:
        return [], [_broken_quote(1, error)]
    header = set(names)
    missing = sorted(name for name, f in kind.row_model.model_fields.items()
                     if f.is_required() and name not in header)
    if missing:
        return [], [RowProblem(1, ", ".join(missing), "", "required column missing from the header")]
    unknown = sorted(header - expected)
    if unknown:
        problems.append(RowProblem(1, ", ".join(unknown), "", f"unknown column; expected {sorted(expected)}"))
    for number, last, raw in _records(reader, lambda: reader.line_num, names, problems):
        progress.advance(1)
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k in expected}
        values = {k: v for k, v in values.items() if v not in ("", None)}
        broken = sorted(k for k, v in values.items() if k not in kind.multiline and isinstance(v, str)
                        and ("\n" in v or "\r" in v))
        if broken:
            problems.extend(RowProblem(number, column, values[column].splitlines()[0] + " …",
                                       f"the value runs from line {number} to line {last}: close the quote opened "
                                       f"on line {number} where the value ends") for column in broken)
            continue
        try:
            row = kind.row_model.model_validate(values)
        except ValidationError as error:
            spans = (f" (this row runs on to line {last}: a quoted value holds line breaks; if that is not "
                     f"meant, close the quote opened on line {number})" if last > number else "")
            for item in error.errors():
                why = item["msg"].removeprefix("Value error, ")
                column = str(item["loc"][0]) if item["loc"] else "(row)"
                named, _, rest = why.partition(": ")
                if column == "(row)" and named in expected:  # a whole-row rule names its column first
                    column, why = named, rest
                problems.append(RowProblem(number, column, str(raw.get(column, "")), why + spans))
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


def _plain(value: Any) -> Any:
    """A stored or imported value as the trail's JSON keeps it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _approval_only(kind: ImportKind, number: int, row: BaseModel, record: dict[str, Any],
                   before: dict[str, Any]) -> list[RowProblem]:
    """Keep what only an approval changes: a column the file left empty keeps the stored value, a changed one is
    a problem of its row."""
    problems = []
    for column, instead in kind.approval_only.items():
        if column not in row.model_fields_set:
            record[column] = before[column]
        elif before[column] != record[column]:
            named = " / ".join(str(before[k]) for k in kind.natural_key)
            problems.append(RowProblem(number, column, str(_plain(record[column])),
                                       f"{kind.table.name} {named}: {column} is {_plain(before[column])} and an "
                                       f"import cannot change it; {instead}, or leave the cell empty or as "
                                       "stored"))
    return problems


def _then(db: Session, kind: ImportKind, records: list[tuple[int, BaseModel, dict[str, Any]]],
          stored: dict[tuple[Any, ...], dict[str, Any]]) -> set[int]:
    """Run the kind's `then` on every row with its stored id (new rows' ids read back in one query per batch)."""
    assert kind.then is not None
    keys = [tuple(record[k] for k in kind.natural_key) for _, _, record in records]
    now = _existing(db, kind, [key for key in keys if key not in stored])
    return kind.then(db, [Imported(number, row, int((stored.get(key) or now[key])["id"]), key not in stored)
                          for (number, row, _), key in zip(records, keys, strict=True)])


def import_csv(kind_name: str, path: Path, *, actor: str = "import", dry_run: bool = False,
               progress: Callable[[int], Any] | None = None) -> ImportReport:
    """Validate every row of `path`, then upsert them all in one transaction; refuse the whole file on any problem.

    Each changed row leaves one trail event with every changed field's before and after, written in bulk, so
    a 100,000-row file costs one pass; unchanged rows leave nothing.
    """
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise ValueError(f"unknown import kind {kind_name!r}; known: {', '.join(sorted(_KINDS))}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    content = path.read_bytes()
    text = _text(path, content)
    total = max(content.count(b"\n") - 1, 0)
    with (progress or _no_progress)(total) as bar:
        rows, problems = _parse(kind, path, text, bar)
    report = ImportReport(kind=kind.name, rows=len(rows) + len({p.line for p in problems if p.line > 1}),
                          sha256=hashlib.sha256(content).hexdigest())
    with session() as db:
        resolved, reference_problems = kind.references(db, rows)
        problems += reference_problems
        if problems:
            raise ImportRefused(path, sorted(problems, key=lambda p: (p.line, p.column)))
        records = [(number, row, kind.to_record(row, resolved.get(number, {}))) for number, row in rows]
        stored = _existing(db, kind, [tuple(r[k] for k in kind.natural_key) for _, _, r in records])
        new, changed, entries = [], [], []
        new_lines: set[int] = set()
        changed_lines: set[int] = set()
        for number, row, record in records:
            before = stored.get(tuple(record[k] for k in kind.natural_key))
            if before is None:
                new_lines.add(number)
                new.append(record)
                continue
            problems += _approval_only(kind, number, row, record, before)
            changes = {k: {"before": _plain(before.get(k)), "after": _plain(v)} for k, v in record.items()
                       if before.get(k) != v}
            if changes:
                changed_lines.add(number)
                changed.append({**record, "id": before["id"]})
                entries.append(trail.Entry(
                    actor=actor, action="import.row_changed", entity_type=kind.table.name, entity_id=before["id"],
                    data={"file": path.name, "sha256": report.sha256, "line": number,
                          "key": {k: _plain(before[k]) for k in kind.natural_key}, "changes": changes}))
        if problems:
            raise ImportRefused(path, sorted(problems, key=lambda p: (p.line, p.column)))
        report.inserted, report.updated = len(new), len(changed)
        report.unchanged = len(records) - len(new) - len(changed)
        if dry_run:
            db.rollback()
            return report
        for start in range(0, len(new), _BATCH):
            db.execute(insert(kind.table), new[start:start + _BATCH])
        if changed:
            # One statement executed for many rows: a per-row UPDATE spends most of its time building itself.
            columns = [c for c in changed[0] if c != "id"]
            statement = (update(kind.table).where(kind.table.c.id == bindparam("row_id"))
                         .values({c: bindparam(f"new_{c}") for c in columns}))
            for start in range(0, len(changed), _BATCH):
                db.execute(statement, [{"row_id": r["id"], **{f"new_{c}": r[c] for c in columns}}
                                       for r in changed[start:start + _BATCH]])
        touched = _then(db, kind, records, stored) if kind.then is not None else set()
        moved = len(touched - new_lines - changed_lines)  # rows unchanged but for what `then` wrote
        report.updated, report.unchanged = report.updated + moved, report.unchanged - moved
        if new or changed or moved:
            trail.record(db, actor=actor, action="import.applied", entity_type=kind.table.name, entity_id=0,
                         data={"file": path.name, "sha256": report.sha256, "rows": len(records),
                               "inserted": report.inserted, "updated": report.updated})
            trail.record_many(db, entries)
    return report
