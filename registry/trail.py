"""The append-only audit trail; each row carries the hash of the one before it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, text
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import utcnow

GENESIS = "0" * 64


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str
    action: str = Field(index=True)
    entity_type: str
    entity_id: int
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(unique=True, description="Unique, so two writers can never fork the chain.")
    hash: str = Field(unique=True)


def _digest(prev_hash: str, at: datetime, actor: str, action: str, entity_type: str, entity_id: int,
            data: dict[str, Any]) -> str:
    payload = json.dumps(
        [prev_hash, at.isoformat(timespec="microseconds"), actor, action, entity_type, entity_id, data],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(session: Session, *, actor: str, action: str, entity_type: str, entity_id: int,
           data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event in the caller's transaction, chained to the current head."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(714230)"))
    head = session.exec(select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    prev = head or GENESIS
    at = utcnow()
    payload = json.loads(json.dumps(data or {}, default=str))
    event = AuditEvent(at=at, actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                       data=payload, prev_hash=prev,
                       hash=_digest(prev, at, actor, action, entity_type, entity_id, payload))
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class TrailReport:
    events: int
    head: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> TrailReport:
    """Recompute every hash; an edited row, a deleted row or a reordered chain is reported by id."""
    problems: list[str] = []
    prev = GENESIS
    prev_id = 0
    count = 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))):
        count += 1
        assert event.id is not None
        if event.id != prev_id + 1:
            problems.append(f"events {prev_id + 1}..{event.id - 1} are missing (deleted)")
        if event.prev_hash != prev:
            problems.append(f"event {event.id}: does not follow event {prev_id} (chain broken)")
        expected = _digest(event.prev_hash, event.at, event.actor, event.action, event.entity_type,
                           event.entity_id, event.data)
        if expected != event.hash:
            problems.append(f"event {event.id} ({event.action}): content does not match its hash (edited)")
        prev, prev_id = event.hash, event.id
    return TrailReport(events=count, head=prev, problems=problems)
