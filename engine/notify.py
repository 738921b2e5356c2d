"""Notifications through the outbox: queued in the caller's transaction, delivered once, retried with back-off.

A queued row keeps the template and its context, never a live link: link tokens are minted at delivery, so the
registry holds only their hashes. The stored subject and bodies are the record of what was said, with a
placeholder where each link went.

Delivery is at least once per message, never per batch: each message is marked sent in its own short transaction
the moment its server accepts it, so a crash repeats at most the message in flight. A failed message is retried
with capped back-off for as long as it is useful (until the steps it links to expire, or a long horizon), and a
person is told once about every message that is not getting through. Only the links of a copy that certainly did
not leave are deleted: one whose server stored it but never replied keeps its links, and its retry mints more.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from markupsafe import escape
from pydantic_core import to_jsonable_python
from sqlalchemy import Connection, Executable, Select, and_, bindparam, delete, insert, or_, update
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from engine import channels, links
from engine.once import insert_ignoring_conflicts
from engine.settings import get_settings
from engine.templates import Message, TemplateProblem, render_message
from registry import DeliveryStatus, HumanStep, Notification, Person, StepLink, session
from registry.clock import as_utc, utcnow
from registry.db import get_engine
from registry.people import person_with_role

_LEASE = timedelta(minutes=5)
QUEUED = "opsdirector.queued"  # session.info: ids this transaction queued, delivered by engine.work after commit
PREVIEW = "opsdirector.preview"  # session.info: queue as previews (engine.work.preview), never to be sent
ALERT_TEMPLATE = "delivery_alert"
_log = logging.getLogger("opsdirector.delivery")


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
    if not files:  # most messages: no need to resolve the data directory once per message
        return []
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
    if not stored:  # most messages: no need to resolve the data directory once per message
        return []
    root = get_settings().data_dir.resolve()
    paths = [root / name for name in stored]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ValueError(f"attachment(s) no longer exist: {', '.join(missing)}")
    return paths


def queued_statement(keys: Sequence[str]) -> Select[tuple[int, str]]:
    """The ids queued under each message key, one row per channel: the enqueue's idempotency check.

    An equality lookup on the indexed message key, not a prefix match on the idempotency key: `LIKE 'key#%'`
    reads the whole outbox on SQLite (its LIKE ignores case, so no index serves it) and on PostgreSQL without a
    pattern index, and an `IN (key#0, key#1, ...)` would have to guess how many channels the person had then.
    """
    return (select(Notification.id, Notification.message_key)  # type: ignore[return-value]
            .where(col(Notification.message_key).in_(keys))
            .order_by(col(Notification.message_key), col(Notification.channel)))


def enqueue(
    db: Session, *, key: str, recipient_id: int, template: str, context: dict[str, Any], preview_only: bool = False,
    attachments: Sequence[Path] = (),
) -> list[Notification]:
    """Queue one message to every channel of the recipient, unless `key` was queued before.

    The template is rendered here, so a template error (or a missing attachment) surfaces before anything is
    written or sent. Attachments are files under the data directory; images are shown inline in e-mail
    (reference them as `cid:<file name>`).
    """
    [ids] = enqueue_many(db, [Queued(key=key, recipient_id=recipient_id, template=template, context=context,
                                     attachments=attachments)], preview_only=preview_only)
    return list(db.exec(select(Notification).where(col(Notification.id).in_(ids)).order_by(col(Notification.channel))))


@dataclass(frozen=True)
class Queued:
    """One message for `enqueue_many`: `enqueue`'s arguments but the session."""

    key: str
    recipient_id: int
    template: str
    context: dict[str, Any]
    attachments: Sequence[Path] = ()


_MANY = 500  # keys per SELECT, rows per INSERT


def enqueue_many(db: Session, messages: Sequence[Queued], *, preview_only: bool = False) -> list[list[int]]:
    """`enqueue` for many messages: one SELECT of the keys queued before, one of the recipients, every message
    rendered, then one INSERT … ON CONFLICT DO NOTHING RETURNING for the new rows. Each message's row ids (one
    per channel of its recipient), in the order of `messages`.

    As with `enqueue`, a key queued before is left as it was, a template error or a missing attachment surfaces
    before anything is written, and what is queued is delivered by the unit of work after it commits. Of two
    callers queueing the same key at the same moment, one writes it and delivers it; the other gets its ids.
    """
    if len({m.key for m in messages}) != len(messages):
        raise ValueError("enqueue_many: the same key twice")
    keys = [m.key for m in messages]
    found = _queued_ids(db, keys)
    new = [m for m in messages if m.key not in found]
    if new:
        preview_only = preview_only or bool(db.info.get(PREVIEW))
        people = people_by_id(db, {m.recipient_id for m in new})
        status = DeliveryStatus.preview if preview_only else DeliveryStatus.pending
        rows: list[dict[str, Any]] = []
        for queued in sorted(new, key=lambda m: m.key):  # key order: two concurrent inserts wait, never deadlock
            person = people.get(queued.recipient_id)
            if person is None:
                raise ValueError(f"recipient {queued.recipient_id} does not exist")
            stored = to_jsonable_python(queued.context)
            message = render_message(queued.template, stored, _placeholder)
            files = stored_attachments(queued.attachments)
            now = utcnow()
            rows += [{"idempotency_key": f"{queued.key}#{index}", "message_key": queued.key,
                      "recipient_id": queued.recipient_id, "channel": index, "template": queued.template,
                      "context": stored, "subject": message.subject, "body_text": message.text,
                      "body_html": message.html, "attachments": files, "status": status, "attempts": 0,
                      "next_attempt_at": now, "created_at": now}
                     for index, _ in enumerate(channels.targets(person))]
        db.flush()
        inserted: dict[str, list[tuple[int, int]]] = {}
        # Every row given to one cached statement (see engine.human_steps.ask_many), on the connection: Core.
        table = Notification.__table__  # type: ignore[attr-defined]
        statement = insert_ignoring_conflicts(db, table).returning(table.c.id, table.c.message_key, table.c.channel)
        for row_id, key, channel in db.connection().execute(statement, rows):
            inserted.setdefault(key, []).append((channel, row_id))
        found.update((key, [i for _, i in sorted(pairs)]) for key, pairs in inserted.items())
        if not preview_only or db.info.get(PREVIEW):
            db.info.setdefault(QUEUED, []).extend(sorted(i for ids_ in inserted.values() for _, i in ids_))
        if lost := [m.key for m in new if m.key not in inserted]:
            found.update(_queued_ids(db, lost))
    return [found.get(key, []) for key in keys]


def people_by_id(db: Session, ids: Iterable[int]) -> dict[int, Person]:
    """The people with these ids: those the session holds already without a query, the rest in one SELECT."""
    people: dict[int, Person] = {}
    wanted: list[int] = []
    for person_id in sorted(set(ids)):
        held = db.identity_map.get(identity_key(Person, person_id))
        if held is not None:
            people[person_id] = held  # type: ignore[assignment]
        else:
            wanted.append(person_id)
    for start in range(0, len(wanted), _MANY):
        people.update((p.id or 0, p) for p in db.exec(
            select(Person).where(col(Person.id).in_(wanted[start:start + _MANY]))))
    return people


def _queued_ids(db: Session, keys: Sequence[str]) -> dict[str, list[int]]:
    """The ids queued under each of `keys`, in channel order (an equality lookup on the message key index)."""
    found: dict[str, list[int]] = {}
    for start in range(0, len(keys), _MANY):
        for row_id, key in db.execute(queued_statement(keys[start:start + _MANY])):
            found.setdefault(key, []).append(row_id)
    return found


def digest(
    db: Session, *, key: str, template: str, items: dict[int, list[dict[str, Any]]], context: dict[str, Any],
    items_as: str = "items",
) -> list[int]:
    """One message per person listing all their items (never one per item); the queued ids.

    `key` names the occasion; each person's message is keyed `{key}-{person id}`, so a re-run queues nothing new.
    """
    people = people_by_id(db, items)
    if missing := sorted(set(items) - set(people)):
        raise ValueError(f"recipient {missing[0]} does not exist")
    queued = enqueue_many(db, [Queued(key=f"{key}-{person_id}", recipient_id=person_id, template=template,
                                      context={**context, "recipient": recipient(people[person_id]), items_as: own})
                               for person_id, own in items.items()])
    return [row_id for ids in queued for row_id in ids]


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    alerted: list[int] = field(default_factory=list)  # messages a person has just been told are not getting through


_BATCH = 200


def deliver_due(*, ids: list[int] | None = None, now: datetime | None = None, limit: int = 5000) -> DeliveryReport:
    """Send every pending message that is due (or just `ids`); safe to run from several processes at once.

    Messages are claimed in batches, each as the stream reaches it, then rendered with their links minted and
    committed one by one while the mail server stores the message before (e-mails to one server share an SMTP
    session), each outcome committed as it comes. Then whoever watches delivery is told of messages that are not
    getting through.
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
    _deliver([due[start:start + _BATCH] for start in range(0, len(due), _BATCH)], report, now)
    alerts = _alert_stuck(now, report)
    if alerts:
        _deliver([alerts], report, now)
    return report


def requeue_failed(*, ids: list[int] | None = None, now: datetime | None = None) -> list[int]:
    """Send failed messages again (all, or just `ids`): retried afresh for delivery_give_up_hours from now."""
    now = now or utcnow()
    with session() as db:
        query = update(Notification).where(col(Notification.status) == DeliveryStatus.failed)
        if ids is not None:
            query = query.where(col(Notification.id).in_(ids))
        requeued = db.execute(
            query.values(status=DeliveryStatus.pending, attempts=0, next_attempt_at=now, alerted_at=None,
                         give_up_at=now + timedelta(hours=get_settings().delivery_give_up_hours))
            .returning(col(Notification.id)).execution_options(synchronize_session=False))
        return sorted(row[0] for row in requeued)


def _claim(db: Session, notification_ids: list[int], now: datetime) -> list[int]:
    """The ids this process now owns for the lease; another process's claim wins over ours."""
    claimed = db.execute(
        update(Notification)
        .where(col(Notification.id).in_(notification_ids), col(Notification.status) == DeliveryStatus.pending,
               col(Notification.next_attempt_at) <= now)
        .values(attempts=Notification.attempts + 1, next_attempt_at=now + _LEASE)
        .returning(col(Notification.id))
        .execution_options(synchronize_session=False)
    )
    ids = sorted(row[0] for row in claimed)
    db.commit()
    return ids


@dataclass
class _Prepared:
    notification_id: int
    outgoing: channels.Outgoing | None = None
    error: str | None = None
    minted: list[str] = field(default_factory=list)
    expires: list[datetime] = field(default_factory=list)  # of the steps the message links to


def _deliver(batches: list[list[int]], report: DeliveryReport, now: datetime) -> None:
    """Claim each batch as the stream reaches it, and deliver every claimed message over one stream.

    The stream is read one message ahead of the send (see `channels.deliver`): a message is rendered, its links
    minted and committed while the server stores the one before, and sent only once that one's outcome is
    committed. The links are committed as soon as they are written, so this never holds the database's write
    lock while it waits for the server (on SQLite, the drill asking the next part of its roster in another
    thread would wait for that lock, and this thread then for the drill's).
    """
    with _outcome_session() as db:
        to_tell = _alert_recipient(db) is not None
        db.commit()
        ready: list[_Prepared] = []

        def outgoing() -> Iterator[channels.Outgoing]:
            for batch in batches:
                claimed = _claim(db, batch, now)
                batch_data = _Batch.load(db, claimed)
                for notification_id in claimed:
                    item = _prepare(db, batch_data, notification_id)
                    if item.outgoing is None:
                        _record_failure(db, item, channels.Outcome(item.error), now, report, can_give_up=to_tell)
                        db.commit()
                        continue
                    ready.append(item)  # its links, if any, were committed as they were written
                    yield item.outgoing

        # One short transaction per outcome, committed before the next message goes: what the server accepted
        # is recorded as sent even if this process dies on the next one.
        for index, outcome in channels.deliver(outgoing()):
            item = ready[index]
            if outcome.sent:
                _record_sent(db, item.notification_id)
                report.sent.append(item.notification_id)
            else:
                _record_failure(db, item, outcome, now, report, can_give_up=to_tell)
                db.commit()


@contextmanager
def _outcome_session() -> Iterator[Session]:
    """A session whose commits are durable once the database has them, without waiting for the disk.

    A commit per message would otherwise cost an fsync each (1-3 ms, as much as sending the message). Committed
    this way, an outcome survives the death of this process or of the database's; only an operating-system
    crash of the database machine can lose the last few, and a lost "sent" means a second copy, never a loss.
    """
    with get_engine().connect() as connection:
        dialect = connection.dialect.name
        before = None
        if dialect == "sqlite":
            before = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
        elif dialect == "postgresql":
            connection.exec_driver_sql("SET synchronous_commit TO off")
        connection.commit()
        try:
            with Session(bind=connection, expire_on_commit=False) as db:
                try:
                    yield db
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
        finally:
            connection.rollback()
            if dialect == "sqlite":
                connection.exec_driver_sql(f"PRAGMA synchronous={int(before or 2)}")
            elif dialect == "postgresql":
                connection.exec_driver_sql("RESET synchronous_commit")
            connection.commit()


# Built once: through the ORM session an UPDATE per message costs more than the SQL itself; on the session's
# connection this Core statement is compiled once and cached.
_MARK_SENT = (update(Notification)
              .where(col(Notification.id) == bindparam("note_id"), col(Notification.status) == DeliveryStatus.pending)
              .values(status=DeliveryStatus.sent, sent_at=bindparam("sent_at"), last_error=None))


# Core on the session's connection, as _MARK_SENT: the ORM's bulk insert path cost about 0.7 ms a message.
_ADD_LINKS = insert(StepLink.__table__)  # type: ignore[attr-defined]


def _record_sent(db: Session, notification_id: int) -> None:
    """The message marked sent and committed before this returns."""
    _committed(db, _MARK_SENT, {"note_id": notification_id, "sent_at": utcnow()})


def _committed(db: Session, statement: Executable, params: dict[str, Any] | list[dict[str, Any]]) -> None:
    """`statement` executed and committed at once in a transaction of its own on the session's connection.

    Once or twice a message (its links, its outcome), so not through the session: beginning and committing the
    session's transaction around one Core statement cost about 0.3 ms, the statement and its commit 0.05.
    Whatever the session holds is committed first, as it would have been with this statement.
    """
    if db.in_transaction():
        db.commit()
    connection = db.get_bind()
    assert isinstance(connection, Connection)  # _outcome_session's
    # begin() refuses a connection already in a transaction: one the session had joined would not be committed
    with connection.begin():
        connection.execute(statement, params)


def _record_failure(db: Session, item: _Prepared, outcome: channels.Outcome, now: datetime,
                    report: DeliveryReport, *, can_give_up: bool) -> None:
    """Retry with capped back-off until the message's useful life ends; then fail it, if someone will be told."""
    if item.minted and not outcome.may_have_left:
        db.execute(delete(StepLink).where(col(StepLink.token_hash).in_(item.minted)))
    row = db.get(Notification, item.notification_id, populate_existing=True)
    if row is None or row.status != DeliveryStatus.pending:
        return
    settings = get_settings()
    row.last_error = outcome.error
    if row.give_up_at is None:
        row.give_up_at = max(item.expires) if item.expires else (
            as_utc(row.created_at) + timedelta(hours=settings.delivery_give_up_hours))
    give_up_at = as_utc(row.give_up_at)
    if now >= give_up_at and can_give_up and row.template != ALERT_TEMPLATE:
        row.status = DeliveryStatus.failed
        report.failed.append(item.notification_id)
    else:
        delay = timedelta(seconds=min(settings.delivery_backoff_seconds * 2 ** max(row.attempts - 1, 0),
                                      settings.delivery_max_backoff_seconds))
        if give_up_at > now:
            # A message useful for minutes (a drill alert) gets several tries after its server comes back, and
            # the last falls on the moment it stops being useful, not a back-off step after it.
            delay = min(delay, max((give_up_at - now) / 3, timedelta(seconds=settings.delivery_backoff_seconds)))
            row.next_attempt_at = min(now + delay, give_up_at)
        else:
            row.next_attempt_at = now + delay
        report.retrying.append(item.notification_id)
    db.add(row)


def _alert_recipient(db: Session) -> Person | None:
    wanted = get_settings().delivery_alert_email
    if wanted:
        return db.exec(select(Person).where(col(Person.email) == wanted)).first()
    return person_with_role(db, "director")


def _alert_stuck(now: datetime, report: DeliveryReport) -> list[int]:
    """Tell one person, once, of every message given up or still undelivered after the alert threshold.

    Each message is claimed for the alert with one conditional UPDATE, so concurrent deliveries tell once. The
    notice goes to the person's own channels: a chat channel reaches them while the mail server is down; with
    e-mail only, it waits in the outbox like the rest and goes when the server is back.
    """
    threshold = now - timedelta(minutes=get_settings().delivery_alert_after_minutes)
    with session() as db:
        told = _alert_recipient(db)
        if told is None:
            stuck = db.exec(select(Notification.id).where(
                col(Notification.status) == DeliveryStatus.pending, col(Notification.last_error).is_not(None),
                col(Notification.created_at) <= threshold).limit(1)).first()
            if stuck is not None:
                _log.error("messages are not getting through and nobody is named to be told: set "
                           "OPS_DELIVERY_ALERT_EMAIL or give a person the role \"director\"; see `ops outbox`")
            return []
        claimed = db.execute(
            update(Notification)
            .where(col(Notification.alerted_at).is_(None), col(Notification.template) != ALERT_TEMPLATE,
                   col(Notification.last_error).is_not(None),
                   or_(col(Notification.status) == DeliveryStatus.failed,
                       and_(col(Notification.status) == DeliveryStatus.pending,
                            col(Notification.created_at) <= threshold)))
            .values(alerted_at=now).returning(col(Notification.id)).execution_options(synchronize_session=False))
        ids = sorted(row[0] for row in claimed)
        if not ids:
            return []
        rows = list(db.exec(select(Notification).where(col(Notification.id).in_(ids)).order_by(col(Notification.id))))
        names = {p.id: p for p in db.exec(select(Person).where(col(Person.id).in_({r.recipient_id for r in rows})))}
        messages = [{"id": row.id, "to": names[row.recipient_id].name, "email": names[row.recipient_id].email,
                     "subject": row.subject, "status": row.status.value, "attempts": row.attempts,
                     "last_error": row.last_error, "created_at": row.created_at,
                     "next_attempt_at": row.next_attempt_at, "give_up_at": row.give_up_at} for row in rows]
        key = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
        queued = enqueue(db, key=f"delivery-alert-{key}", recipient_id=told.id or 0, template=ALERT_TEMPLATE,
                         context={"recipient": recipient(told), "messages": messages,
                                  "failed": sum(1 for m in messages if m["status"] == "failed")})
        report.alerted += ids
        return [row.id for row in queued if row.id is not None]


@dataclass
class _Batch:
    """A claimed batch's rows, read in a few queries instead of several per message."""

    notes: dict[int, Notification]
    people: dict[int, Person]
    steps: dict[int, tuple[int, datetime]]  # id → (id, expires_at), for the steps its contexts name

    @classmethod
    def load(cls, db: Session, claimed: list[int]) -> _Batch:
        notes = {n.id or 0: n for n in db.exec(select(Notification).where(col(Notification.id).in_(claimed)))}
        people = {p.id or 0: p for p in db.exec(
            select(Person).where(col(Person.id).in_({n.recipient_id for n in notes.values()})))}
        named = {i for n in notes.values() for i in _step_ids(n.context)}
        steps = {row[0]: (row[0], row[1]) for row in db.execute(
            select(HumanStep.id, HumanStep.expires_at).where(col(HumanStep.id).in_(named)))} if named else {}
        return cls(notes, people, steps)


def _step_ids(context: Any) -> Iterator[int]:
    """The step ids a context names under `step_id` keys: what its template most likely links to (a prefetch
    only; a link to any other step is looked up when it is rendered)."""
    if isinstance(context, dict):
        for key, value in context.items():
            if key == "step_id" and isinstance(value, int):
                yield value
            else:
                yield from _step_ids(value)
    elif isinstance(context, list):
        for value in context:
            yield from _step_ids(value)


def _prepare(db: Session, batch: _Batch, notification_id: int) -> _Prepared:
    """Render a claimed message with fresh links, added to `db`; a message that cannot be rendered mints nothing."""
    prepared = _Prepared(notification_id)
    note = batch.notes.get(notification_id)
    person = batch.people.get(note.recipient_id) if note else None
    assert note is not None and person is not None
    issued: dict[int, str] = {}
    added: list[dict[str, Any]] = []

    def _link(step_id: int) -> str:
        # The text and HTML bodies show the same link: one token per step per message.
        if step_id not in issued:
            step = batch.steps.get(step_id)
            if step is None:
                row = db.execute(select(HumanStep.id, HumanStep.expires_at).where(col(HumanStep.id) == step_id)).first()
                if row is None:
                    raise ValueError(f"message links to step {step_id}, which does not exist")
                step = batch.steps[step_id] = (row[0], row[1])
            # As links.mint does, without building an ORM row per link: they go in as one insert.
            token = secrets.token_urlsafe(32)
            token_hash = links.hash_token(token)
            added.append({"step_id": step[0], "person_id": person.id or 0, "token_hash": token_hash,
                          "created_at": utcnow(), "expires_at": step[1]})
            prepared.minted.append(token_hash)
            prepared.expires.append(as_utc(step[1]))
            issued[step_id] = links.url_for(token)
        return issued[step_id]

    targets = channels.targets(person)
    url = targets[note.channel] if note.channel < len(targets) else None
    if url is None:
        prepared.error = f"{person.name} no longer has channel {note.channel}"
        return prepared
    try:
        message = _spliced(note, _link) or render_message(note.template, note.context, _link)
        files = attachment_paths(note.attachments)
    except (TemplateProblem, ValueError) as problem:
        prepared.minted.clear()
        prepared.expires.clear()
        prepared.error = str(problem)
        return prepared
    if added:  # committed before the message can leave
        _committed(db, _ADD_LINKS, added)
    prepared.outgoing = channels.Outgoing(url, message, tuple(files))
    return prepared


_PLACEHOLDER = re.compile(r"\[link for step (\d+), minted on delivery\]")
_CHANGED_PLACEHOLDER = re.compile(r"minted.{0,6}on.{0,6}delivery", re.IGNORECASE | re.DOTALL)


def _spliced(note: Notification, link: Callable[[int], str]) -> Message | None:
    """The message as it was rendered and stored when queued, a fresh link where each placeholder stands: what
    rendering its template again would give, since a template shows a link as it is (`{{ link(step_id) }}`,
    HTML-escaped in the HTML part), at a fraction of the cost. The sent message is then the record word for word.

    None, and the template is rendered again, for a row without its stored bodies or whose placeholders are not
    all found as written (a filter changed one, or the gateway's address changed since): nothing is minted then.
    """
    parts = (note.subject, note.body_text, note.body_html)
    if not note.body_text:
        return None
    steps = sorted({int(found) for part in parts for found in _PLACEHOLDER.findall(part)})
    plain = [(step_id, _placeholder(step_id)) for step_id in steps]
    forms = ((plain,) * 2) + ([(step_id, str(escape(text))) for step_id, text in plain],)

    def _replaced(part: str, placeholders: list[tuple[int, str]], url: Callable[[int], str]) -> str:
        for step_id, placeholder in placeholders:
            part = part.replace(placeholder, url(step_id))
        return part

    if any(_CHANGED_PLACEHOLDER.search(_replaced(part, placeholders, lambda _: ""))
           for part, placeholders in zip(parts, forms, strict=True)):
        return None
    subject, text, html = (_replaced(part, placeholders, url) for part, placeholders, url in
                           zip(parts, forms, (link, link, lambda step_id: str(escape(link(step_id)))), strict=True))
    return Message(subject=subject, text=text, html=html)
