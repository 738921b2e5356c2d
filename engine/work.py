"""A unit of work on the registry: what it queues is delivered right after it commits, or previewed instead.

    with unit() as db:
        step = request(db, key=..., person_id=..., form="attestation", template="compliance/audit/…", ...)
    # committed, and the message is on its way

A unit opened inside another joins it (one transaction, one delivery at the end), so a task's body can run on
its own or inside `preview(...)`, where the same path renders every message it would send, publishes them as
a Prefect artifact, and rolls everything back. That is how a process previews: the real path, not a copy.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from engine import notify
from engine.human_steps import Ask, ask, ask_many
from registry import HumanStep, Notification, Person, session


@dataclass
class _Unit:
    db: Session
    preview: bool


@dataclass(frozen=True)
class Previewed:
    """A message a preview would have sent."""

    to: str
    subject: str
    text: str


@dataclass
class Preview:
    messages: list[Previewed] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n\n".join(f"**To:** {m.to}  \n**Subject:** {m.subject}\n\n```\n{m.text}```"
                           for m in self.messages) or "Nothing would be sent."


_current: ContextVar[_Unit | None] = ContextVar("opsdirector_unit", default=None)


def previewing() -> bool:
    """True inside `preview(...)`: write nothing outside the registry, start no run, send nothing."""
    current = _current.get()
    return current is not None and current.preview


@contextmanager
def unit() -> Iterator[Session]:
    """A registry session that commits at the end, then delivers what it queued (inside another unit: that one)."""
    outer = _current.get()
    if outer is not None:
        yield outer.db
        return
    with session() as db:
        token = _current.set(_Unit(db, preview=False))
        try:
            yield db
        finally:
            _current.reset(token)
        queued = list(db.info.pop(notify.QUEUED, []))
    if queued:
        courier = _courier.get()
        if courier is not None:
            courier.hand(queued)
        else:
            notify.deliver_due(ids=queued)


class _Courier:
    """One thread delivering, in order, what the units inside `delivering_meanwhile` committed."""

    def __init__(self) -> None:
        self.batches: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="opsdirector-delivery", daemon=True)
        self.thread.start()

    def hand(self, ids: list[int]) -> None:
        self.batches.put(ids)

    def _run(self) -> None:
        ending = False
        while not ending and (ids := self.batches.get()) is not None:
            # What was handed over while the last delivery ran goes in one: one claim query and one SMTP
            # session for it, not one per part.
            while True:
                try:
                    more = self.batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    ending = True
                    break
                ids = ids + more
            if self.failure is None:
                try:
                    notify.deliver_due(ids=ids)
                except BaseException as error:  # raised in the caller's thread when it ends
                    self.failure = error

    def finish(self) -> None:
        self.batches.put(None)
        self.thread.join()


_courier: ContextVar[_Courier | None] = ContextVar("opsdirector_courier", default=None)
_frozen = threading.Event()


def _freeze_imports() -> None:
    """Once a process, before its first big unit of work: what it holds so far (its imports: Prefect, SQLAlchemy,
    Apprise, some 260,000 objects) left out of the garbage collector's full collections from then on.

    The rows a drill's roster loads add enough long-lived objects to set off a full collection while its alerts
    go out, and that rescanned the imports too: 0.2-0.5 s holding the interpreter, the delivery thread waiting.
    Frozen objects are still freed when nothing refers to them; only a cycle of them that is garbage already
    would stay, and at this point there are next to none (once a process, so it cannot grow).
    """
    if not _frozen.is_set():
        _frozen.set()
        gc.freeze()


@contextmanager
def delivering_meanwhile() -> Iterator[None]:
    """Units that commit inside hand what they queued to one delivery thread and carry on at once, so a task that
    commits in parts (a drill's roster, a part at a time) has the first part's messages on their way while it
    writes the next. Everything handed over is delivered before this ends; a delivery error is raised here.

    Delivery stays what it is (each message marked sent as its server accepts it, nothing before its unit
    commits); only the waiting moves. Inside a preview nothing is delivered anyway.
    """
    if _courier.get() is not None or previewing():
        yield
        return
    _freeze_imports()
    courier = _Courier()
    token = _courier.set(courier)
    try:
        yield
    finally:
        _courier.reset(token)
        courier.finish()
    if courier.failure is not None:
        raise courier.failure


@contextmanager
def preview(description: str) -> Iterator[Preview]:
    """Run a path for show: every message it queues is rendered into the yielded Preview (and a Prefect artifact
    when inside a run), and nothing it wrote is kept."""
    shown = Preview()
    with session() as db:
        db.info[notify.PREVIEW] = True
        token = _current.set(_Unit(db, preview=True))
        try:
            yield shown
            db.flush()
            ids = db.info.pop(notify.QUEUED, [])
            for row in db.exec(select(Notification).where(col(Notification.id).in_(ids), Notification.channel == 0)
                               .order_by(col(Notification.id))):
                person = db.get(Person, row.recipient_id)
                shown.messages.append(Previewed(to=person.email if person else "?", subject=row.subject,
                                                text=row.body_text))
        finally:
            _current.reset(token)
            db.rollback()
    _publish(shown, description)


def _publish(shown: Preview, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    create_markdown_artifact(shown.markdown(), description=description)


def request(
    db: Session,
    *,
    key: str,
    person_id: int,
    form: str,
    title: str,
    subject_type: str,
    subject_id: int,
    due_at: datetime,
    template: str,
    context: dict[str, Any],
    actor: str,
    expires_at: datetime | None = None,
    kind: Literal["approval", "form"] = "form",
    requested_by_id: int | None = None,
    flow_run_id: str | None = None,
    details: dict[str, Any] | None = None,
    escalate_to: Sequence[int] = (),
) -> HumanStep:
    """Ask one person (a step keyed `key`) and queue the message that carries its link, in one call.

    The template gets `recipient`, `step_id`, `due_at` and (unless `context` has one) `step` besides `context`.
    Asked again under the same key, nothing new is created or queued. Overdue, the step is escalated to the
    person's manager and to `escalate_to`.
    """
    asked = Ask(key=key, person_id=person_id, form=form, title=title, subject_type=subject_type,
                subject_id=subject_id, due_at=due_at, expires_at=expires_at, kind=kind,
                requested_by_id=requested_by_id, flow_run_id=flow_run_id, details=details or {}, actor=actor,
                escalate_to=tuple(escalate_to))
    return request_many(db, [Request(ask=asked, template=template, context=context)])[0]


@dataclass(frozen=True)
class Request:
    """One person's request for `request_many`: the step to ask, and the message that carries its link."""

    ask: Ask
    template: str
    context: dict[str, Any]


def request_many(db: Session, requests: Sequence[Request]) -> list[HumanStep]:
    """`request` for many people at once (a drill's whole roster): the steps asked with
    `engine.human_steps.ask_many` and their messages queued with `engine.notify.enqueue_many`, a few statements
    in all instead of several round trips per person. The steps in the order of `requests`; asked again under
    the same keys, nothing new is created or queued.
    """
    # Loaded first and held: the session keeps a loaded row only while something refers to it, so the people
    # ask_many reads would be built again from a second SELECT here and a third in enqueue_many.
    held = notify.people_by_id(db, {r.ask.person_id for r in requests})
    steps = ask_many(db, [r.ask for r in requests])
    people = {**held, **notify.people_by_id(db, {step.person_id for step in steps} - held.keys())}
    messages = []
    for wanted, step in zip(requests, steps, strict=True):
        summary = {"id": step.id, "title": step.title, "due_at": step.due_at, "expires_at": step.expires_at}
        messages.append(notify.Queued(
            key=wanted.ask.key, recipient_id=step.person_id, template=wanted.template,
            context={"step": summary, **wanted.context, "recipient": notify.recipient(people[step.person_id]),
                     "step_id": step.id, "due_at": step.due_at}))
    notify.enqueue_many(db, messages)
    return steps


class Digest:
    """Many steps, one message per person listing theirs (never one message per step).

        asks = Digest(key=f"audit-{id}-evidence", template="compliance/audit/evidence_request",
                      context={"audit": ...}, items_as="controls")
        for test in tests:
            asks.ask(db, item={"ref": ...}, key=..., person_id=..., form=..., ...)
        asks.queue(db)
    """

    def __init__(self, *, key: str, template: str, context: dict[str, Any], items_as: str = "items") -> None:
        self.key, self.template, self.context, self.items_as = key, template, context, items_as
        self.items: dict[int, list[dict[str, Any]]] = {}

    def ask(self, db: Session, *, item: dict[str, Any], **step: Any) -> HumanStep:
        """Ask as engine.human_steps.ask does (`escalate_to` included); `item` (with the step's id added as
        `step_id`) goes in the digest."""
        asked = ask(db, **step)
        self.items.setdefault(asked.person_id, []).append({**item, "step_id": asked.id})
        return asked

    def add(self, person_id: int, item: dict[str, Any]) -> None:
        """An item that is not a step (a finding to act on, a contract that ends)."""
        self.items.setdefault(person_id, []).append(item)

    def queue(self, db: Session) -> list[int]:
        return notify.digest(db, key=self.key, template=self.template, items=self.items, context=self.context,
                             items_as=self.items_as)
