"""Notifications through the outbox: queued in the caller's transaction, delivered once, retried with back-off.

A queued row keeps the template and its context, never a live link: link tokens are minted at delivery, so the
registry holds only their hashes. The stored subject and bodies are the record of what was said, with a
placeholder where each link went.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from engine import channels, links
from engine.settings import get_settings
from engine.templates import Message, TemplateProblem, render_message
from registry import DeliveryStatus, HumanStep, Notification, Person, StepLink, session
from registry.clock import utcnow

_LEASE = timedelta(minutes=5)


def _placeholder(step_id: int) -> str:
    return f"{get_settings().gateway_url.rstrip('/')}/s/[link for step {step_id}, minted on delivery]"


def recipient(person: Person) -> dict[str, str]:
    """What a message template knows of its reader; `when` shows times in their time zone."""
    return {"name": person.name, "timezone": person.timezone}


def preview(template: str, context: dict[str, Any]) -> Message:
    """Render exactly what would be sent, without writing or sending anything."""
    return render_message(template, to_jsonable_python(context), _placeholder)


def preview_for(person: Person, template: str, context: dict[str, Any]) -> str:
    """What `person` would receive, as a markdown section for a preview artifact; nothing is written or sent."""
    message = preview(template, {**context, "recipient": recipient(person)})
    return f"### To {person.name} <{person.email}>\n**{message.subject}**\n\n```\n{message.text}```\n"


def enqueue(
    db: Session, *, key: str, recipient_id: int, template: str, context: dict[str, Any], preview_only: bool = False
) -> list[Notification]:
    """Queue one message to every channel of the recipient, unless `key` was queued before.

    The template is rendered here, so a template error surfaces before anything is written or sent.
    """
    existing = list(db.exec(select(Notification).where(col(Notification.idempotency_key).startswith(f"{key}#"))))
    if existing:
        return existing
    person = db.get(Person, recipient_id)
    if person is None:
        raise ValueError(f"recipient {recipient_id} does not exist")
    stored = to_jsonable_python(context)
    message = render_message(template, stored, _placeholder)
    rows = [
        Notification(
            idempotency_key=f"{key}#{index}", recipient_id=recipient_id, channel=index, template=template,
            context=stored, subject=message.subject, body_text=message.text, body_html=message.html,
            status=DeliveryStatus.preview if preview_only else DeliveryStatus.pending,
        )
        for index, _ in enumerate(channels.targets(person))
    ]
    db.add_all(rows)
    db.flush()
    return rows


def digest(
    db: Session, *, key: str, template: str, items: dict[int, list[dict[str, Any]]], context: dict[str, Any],
    items_as: str = "items",
) -> list[int]:
    """One message per person listing all their items (never one per item); the queued ids.

    `key` names the occasion; each person's message is keyed `{key}-{person id}`, so a re-run queues nothing new.
    """
    ids: list[int] = []
    for person_id, own in items.items():
        person = db.get(Person, person_id)
        if person is None:
            raise ValueError(f"recipient {person_id} does not exist")
        rows = enqueue(db, key=f"{key}-{person_id}", recipient_id=person_id, template=template,
                       context={**context, "recipient": recipient(person), items_as: own})
        ids += [row.id for row in rows if row.id is not None]
    return ids


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def deliver_due(*, ids: list[int] | None = None, now: datetime | None = None, limit: int = 500) -> DeliveryReport:
    """Send every pending message that is due (or just `ids`); safe to run from several processes at once."""
    now = now or utcnow()
    with session() as db:
        query = select(Notification.id).where(
            Notification.status == DeliveryStatus.pending, col(Notification.next_attempt_at) <= now
        )
        if ids is not None:
            query = query.where(col(Notification.id).in_(ids))
        due = [i for i in db.exec(query.order_by(col(Notification.id)).limit(limit)) if i is not None]
    report = DeliveryReport()
    for notification_id in due:
        outcome = _deliver_one(notification_id, now)
        if outcome is not None:
            getattr(report, outcome).append(notification_id)
    return report


def _claim(notification_id: int, now: datetime) -> bool:
    with session() as db:
        claimed = db.execute(
            update(Notification)
            .where(col(Notification.id) == notification_id, col(Notification.status) == DeliveryStatus.pending,
                   col(Notification.next_attempt_at) <= now)
            .values(attempts=Notification.attempts + 1, next_attempt_at=now + _LEASE)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1  # type: ignore[attr-defined]


def _deliver_one(notification_id: int, now: datetime) -> str | None:
    if not _claim(notification_id, now):
        return None
    minted: list[str] = []
    with session() as db:
        note = db.get(Notification, notification_id)
        person = db.get(Person, note.recipient_id) if note else None
        assert note is not None and person is not None

        issued: dict[int, str] = {}

        def _link(step_id: int) -> str:
            # The text and HTML bodies show the same link: one token per step per message.
            if step_id not in issued:
                step = db.get(HumanStep, step_id)
                if step is None:
                    raise ValueError(f"message links to step {step_id}, which does not exist")
                token = links.issue(db, step=step, person_id=person.id or 0)
                minted.append(links.hash_token(token))
                issued[step_id] = links.url_for(token)
            return issued[step_id]

        targets = channels.targets(person)
        url = targets[note.channel] if note.channel < len(targets) else None
        error: str | None = None
        try:
            message: Message | None = render_message(note.template, note.context, _link)
        except (TemplateProblem, ValueError) as problem:
            message, error = None, str(problem)
            db.rollback()
            minted.clear()
    if message is not None:
        error = channels.send(url, message) if url else f"{person.name} no longer has channel {note.channel}"
    settings = get_settings()
    with session() as db:
        row = db.get(Notification, notification_id)
        assert row is not None
        if error is None:
            row.status, row.sent_at, row.last_error = DeliveryStatus.sent, utcnow(), None
            db.add(row)
            return "sent"
        if minted:
            db.execute(delete(StepLink).where(col(StepLink.token_hash).in_(minted)))
        row.last_error = error
        if row.attempts >= settings.delivery_max_attempts:
            row.status = DeliveryStatus.failed
            db.add(row)
            return "failed"
        row.next_attempt_at = utcnow() + timedelta(seconds=settings.delivery_backoff_seconds * 2 ** (row.attempts - 1))
        db.add(row)
        return "retrying"
