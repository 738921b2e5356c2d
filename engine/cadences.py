"""Cadences: what is due by its cron expression, claimed by one conditional UPDATE so two runs never both start it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, SQLModel, col

from engine.deadlines import next_due


def claim(db: Session, model: type[SQLModel], row_id: int, *, seen: datetime | None, cadence: str,
          after: datetime, tz: str, column: str = "next_due_at", **also: Any) -> datetime | None:
    """Move the row's next due date on from `seen` to the cadence's next after `after`; the new date if this call
    did it, None if another run moved it first (or it was not `seen` any more). `also` is set with it."""
    due_column = getattr(model, column)
    moved = next_due(cadence, after, tz)
    held = col(due_column).is_(None) if seen is None else col(due_column) == seen
    result = db.execute(update(model).where(col(model.id) == row_id, held)  # type: ignore[attr-defined]
                        .values({column: moved, **also}).execution_options(synchronize_session=False))
    return moved if result.rowcount == 1 else None  # type: ignore[attr-defined]
