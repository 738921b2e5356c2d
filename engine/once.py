"""Open once: a row that two runs may create at the same moment (a step, an audit, a drill) is created by one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, SQLModel, col

Row = TypeVar("Row", bound=SQLModel)


class LostRaceWithoutWinner(RuntimeError):
    pass


def insert_ignoring_conflicts(session: Session, target: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` into `target` (a model or a table) in the session's own dialect: a row
    another writer stored first is left as it is, and the statement waits for that writer instead of failing."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    return insert(target).on_conflict_do_nothing()


def insert_once(session: Session, row: Row, winner: Callable[[], Row | None]) -> tuple[Row, bool]:
    """Insert `row` unless a unique key says it exists; the stored row (`winner()`), and whether this call
    inserted it.

    The caller looked for the row first and found none; a concurrent writer can still get there between that
    look and this insert. `INSERT … ON CONFLICT DO NOTHING` waits for that writer's transaction and then does
    nothing, so the loser carries on with the winner's row instead of failing on the constraint, inside its own
    transaction (a SAVEPOINT would commit early on SQLite, where the driver opens transactions lazily).
    """
    model = type(row)
    table: Table = row.__table__  # type: ignore[attr-defined]
    values: dict[str, Any] = {column.name: getattr(row, column.name) for column in table.columns
                              if getattr(row, column.name, None) is not None}
    session.flush()
    # RETURNING the row as an ORM object (not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT): the
    # row created is in the session as stored, with no SELECT after it; only a loser asks for the winner.
    inserted = session.scalars(insert_ignoring_conflicts(session, model).values(**values).returning(model),
                               execution_options={"populate_existing": True}).first()
    if inserted is not None:
        return inserted, True
    found = winner()
    if found is None:
        raise LostRaceWithoutWinner(f"{table.name}: the row was neither inserted nor found")
    return found, False


def update_once(session: Session, model: type[SQLModel], row_id: int, *, where: Sequence[Any],
                values: dict[str, Any]) -> bool:
    """One conditional UPDATE of the row `row_id`: of two writers moving it on from the same state, only one
    changes it (True); the session's copy of the row, if it holds one, then reads what the UPDATE wrote."""
    result = session.execute(update(model).where(col(model.id) == row_id, *where)  # type: ignore[attr-defined]
                             .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # Only a copy the session holds can be stale; a row it does not hold is not loaded just to be refreshed.
    held = session.identity_map.get(identity_key(model, row_id))
    if held is not None:
        session.refresh(held)
    return True
