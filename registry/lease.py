"""Leases: which process does a piece of work that must never run twice at once (the engine loop), for how long.

A lease is one row per name. It is claimed, renewed and handed over by one conditional statement each (an INSERT
that, on conflict, updates only a row this holder already holds or one that has expired), so two processes on
two machines can never both believe they hold it; a holder that dies (SIGKILL) simply stops renewing, and the
next claim after `expires_at` is someone else's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col

from registry.clock import utcnow


class EngineLease(SQLModel, table=True):
    __tablename__ = "engine_lease"

    name: str = Field(primary_key=True, description="What the lease is for (\"engine-loop\").")
    holder: str = Field(description="Who holds it: host:pid:token of the process, unique per start.")
    expires_at: datetime = Field(description="Until when; after this any process may claim it.")


def _upsert(db: Session) -> type[Insert]:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert  # type: ignore[return-value]


def claim(db: Session, name: str, holder: str, seconds: float, *, now: datetime | None = None,
          replacing: str | None = None) -> bool:
    """Take or renew the lease `name` for `seconds`: True if `holder` holds it now.

    It is taken when nobody holds it, when it expired, when `holder` holds it already (a renewal), or when
    `replacing` (a holder known to be dead: a process of this machine that is gone) holds it. One statement
    decides, so of two concurrent claims exactly one wins. Committed by the caller's session.
    """
    now = now or utcnow()
    insert = _upsert(db)(EngineLease).values(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds))
    held_by = [col(EngineLease.holder) == holder]
    if replacing is not None:
        held_by.append(col(EngineLease.holder) == replacing)
    statement = insert.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=[EngineLease.name],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},  # type: ignore[attr-defined]
        where=or_(col(EngineLease.expires_at) <= now, *held_by),
    ).returning(col(EngineLease.holder))
    return db.execute(statement).first() is not None


def release(db: Session, name: str, holder: str, *, now: datetime | None = None) -> bool:
    """Give the lease up at once (a clean stop), so another process need not wait for it to expire."""
    result = db.execute(update(EngineLease).where(col(EngineLease.name) == name, col(EngineLease.holder) == holder)
                        .values(expires_at=now or utcnow()).execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def holder_of(db: Session, name: str) -> EngineLease | None:
    """The lease's row (who holds it and until when), or None if nobody ever claimed it."""
    return db.get(EngineLease, name)
