"""Notifications through the outbox: queued in the caller's transaction, delivered once, retried with back-off.

A queued row keeps the template and its context, never a live link: link tokens are minted at delivery, so the
registry holds only their hashes. The stored subject and bodies are the record of what was said, with a
placeholder where each link went.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
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


def stored_attachments(files: Sequence[Path]) -> list[str]:
    """Attachments as kept in the outbox: paths under the data directory, checked to exist now."""
    root = get_settings().data_dir.resolve()
    stored = []
    for file in files:
        path = Path(file).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"attachment {file} is outside the data directory {root}")
        if not path.is_file():
            raise ValueError(f"attachment {file} does not exist")
        stored.append(str(path.relative_to(root)))
    return stored


def attachment_paths(stored: Sequence[str]) -> list[Path]:
    root = get_settings().data_dir.resolve()
    paths = [root / name for name in stored]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ValueError(f"attachment(s) no longer exist: {', '.join(missing)}")
    return paths


def enqueue(
    db: Session, *, key: str, recipient_id: int, template: str, context: dict[str, Any], preview_only: bool = False,
    attachments: Sequence[Path] = (),
) -> list[Notification]:
    """Queue one message to every channel of the recipient, unless `key` was queued before.

    The template is rendered here, so a template error (or a missing attachment) surfaces before anything is
    written or sent. Attachments are files under the data directory; images are shown inline in e-mail
    (reference them as `cid:<file name>`).
    """
    existing = list(db.exec(select(Notification).where(col(Notification.idempotency_key).startswith(f"{key}#"))))
    if existing:
        return existing
    person = db.get(Person, recipient_id)
    if person is None:
        raise ValueError(f"recipient {recipient_id} does not exist")
    stored = to_jsonable_python(context)
    message = render_message(template, stored, _placeholder)
    files = stored_attachments(attachments)
    rows = [
        Notification(
            idempotency_key=f"{key}#{index}", recipient_id=recipient_id, channel=index, template=template,
            context=stored, subject=message.subject, body_text=message.text, body_html=message.html,
            status=DeliveryStatus.preview if preview_only else DeliveryStatus.pending, attachments=files,
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


_BATCH = 200


def deliver_due(*, ids: list[int] | None = None, now: datetime | None = None, limit: int = 5000) -> DeliveryReport:
    """Send every pending message that is due (or just `ids`); safe to run from several processes at once.

    Messages go out in batches: claimed together, rendered with their links minted in one transaction, then
    handed to the channels together (e-mails to one server share an SMTP session).
    """
    now = now or utcnow()
    with session() as db:
        query = select(Notification.id).where(
            Notification.status == DeliveryStatus.pending, col(Notification.next_attempt_at) <= now
        )
        if ids is not None:
            query = query.where(col(Notification.id).in_(ids))
        due = [i for i in db.exec(query.order_by(col(Notification.id)).limit(limit)) if i is not None]
    report = DeliveryReport()
    for start in range(0, len(due), _BATCH):
        _deliver_batch(_claim(due[start:start + _BATCH], now), report)
    return report


def _claim(notification_ids: list[int], now: datetime) -> list[int]:
    """The ids this process now owns for the lease; another process's claim wins over ours."""
    with session() as db:
        claimed = db.execute(
            update(Notification)
            .where(col(Notification.id).in_(notification_ids), col(Notification.status) == DeliveryStatus.pending,
                   col(Notification.next_attempt_at) <= now)
            .values(attempts=Notification.attempts + 1, next_attempt_at=now + _LEASE)
            .returning(col(Notification.id))
            .execution_options(synchronize_session=False)
        )
        return sorted(row[0] for row in claimed)


@dataclass
class _Prepared:
    notification_id: int
    outgoing: channels.Outgoing | None = None
    error: str | None = None
    minted: list[str] = field(default_factory=list)


def _deliver_batch(claimed: list[int], report: DeliveryReport) -> None:
    if not claimed:
        return
    with session() as db:
        prepared = [_prepare(db, notification_id) for notification_id in claimed]
    ready = [p for p in prepared if p.outgoing is not None]
    for item, error in zip(ready, channels.send_all([p.outgoing for p in ready if p.outgoing]), strict=True):
        item.error = error
    settings = get_settings()
    with session() as db:
        rows = {row.id: row for row in db.exec(select(Notification).where(col(Notification.id).in_(claimed)))}
        dead_links = [token for p in prepared if p.error is not None for token in p.minted]
        if dead_links:
            db.execute(delete(StepLink).where(col(StepLink.token_hash).in_(dead_links)))
        for item in prepared:
            row = rows[item.notification_id]
            if item.error is None:
                row.status, row.sent_at, row.last_error = DeliveryStatus.sent, utcnow(), None
                report.sent.append(item.notification_id)
            elif row.attempts >= settings.delivery_max_attempts:
                row.status, row.last_error = DeliveryStatus.failed, item.error
                report.failed.append(item.notification_id)
            else:
                row.last_error = item.error
                row.next_attempt_at = utcnow() + timedelta(
                    seconds=settings.delivery_backoff_seconds * 2 ** (row.attempts - 1))
                report.retrying.append(item.notification_id)
            db.add(row)


def _prepare(db: Session, notification_id: int) -> _Prepared:
    """Render a claimed message with fresh links; a message that cannot be rendered mints nothing."""
    prepared = _Prepared(notification_id)
    note = db.get(Notification, notification_id)
    person = db.get(Person, note.recipient_id) if note else None
    assert note is not None and person is not None
    issued: dict[int, str] = {}
    added: list[StepLink] = []

    def _link(step_id: int) -> str:
        # The text and HTML bodies show the same link: one token per step per message.
        if step_id not in issued:
            step = db.get(HumanStep, step_id)
            if step is None:
                raise ValueError(f"message links to step {step_id}, which does not exist")
            token, link = links.mint(step=step, person_id=person.id or 0)
            db.add(link)
            added.append(link)
            prepared.minted.append(link.token_hash)
            issued[step_id] = links.url_for(token)
        return issued[step_id]

    targets = channels.targets(person)
    url = targets[note.channel] if note.channel < len(targets) else None
    if url is None:
        prepared.error = f"{person.name} no longer has channel {note.channel}"
        return prepared
    try:
        with db.no_autoflush:
            message = render_message(note.template, note.context, _link)
        files = attachment_paths(note.attachments)
    except (TemplateProblem, ValueError) as problem:
        for link in added:
            db.expunge(link)
        prepared.minted.clear()
        prepared.error = str(problem)
        return prepared
    prepared.outgoing = channels.Outgoing(url, message, tuple(files))
    return prepared
