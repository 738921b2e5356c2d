"""Asking and alerting many people at once (a drill's roster): what one ask or one enqueue promises, for each."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlmodel import Session, col, select

from engine import notify
from engine.human_steps import Ask, StepRefused, ask, ask_many
from engine.notify import Queued, enqueue_many
from engine.templates import TemplateProblem
from engine.work import Request, delivering_meanwhile, request_many, unit
from registry import AuditEvent, DeliveryStatus, HumanStep, Notification, Person, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.links import answer_link, links_in


def _ask(person: Person, key: str, **changes: object) -> Ask:
    fields: dict[str, object] = {"key": key, "person_id": person.id or 0, "form": "approval", "kind": "approval",
                                 "title": f"Approve it, {person.name}", "subject_type": "test", "subject_id": 1,
                                 "due_at": utcnow() + timedelta(hours=1), "actor": "test", **changes}
    return Ask(**fields)  # type: ignore[arg-type]


def _requested(db: Session) -> list[str]:
    return sorted(e.data["key"] for e in db.exec(select(AuditEvent).where(AuditEvent.action == "step.requested")))


def _message(person: Person, key: str, step: HumanStep) -> Queued:
    return Queued(key=key, recipient_id=person.id or 0, template="step_reminder",
                  context={"recipient": {"name": person.name, "timezone": "UTC"},
                           "step": {"id": step.id, "title": step.title, "due_at": step.due_at}})


def _people(count: int) -> list[Person]:
    with session() as db:
        return [factories.person(db, f"Many {n}") for n in range(count)]


def test_many_people_are_asked_once_each_in_order_and_asked_again_nobody_is(any_db: str) -> None:
    people = _people(3)
    with session() as db:
        first = ask_many(db, [_ask(p, f"many-{p.id}", escalate_to=(people[0].id,)) for p in people])
    assert [s.person_id for s in first] == [p.id for p in people] and all(s.id for s in first)
    with session() as db:
        again = ask_many(db, [_ask(p, f"many-{p.id}", title="Changed") for p in reversed(people)]
                         + [_ask(people[0], "many-new")])
        single = ask(db, key=f"many-{people[1].id}", person_id=people[1].id or 0, form="approval",
                     kind="approval", title="Changed", subject_type="test", subject_id=1, due_at=utcnow())
        stored = {s.key: s for s in db.exec(select(HumanStep))}
        requested = _requested(db)
    assert [s.id for s in again[:3]] == [s.id for s in reversed(first)] and single.id == first[1].id
    assert all(s.title.startswith("Approve it") for s in again[:3]), "a step asked before is returned unchanged"
    assert stored[f"many-{people[2].id}"].escalate_to == [people[0].id]
    assert len(stored) == 4 and requested == sorted([*(f"many-{p.id}" for p in people), "many-new"])


def test_an_inactive_persons_delegate_is_asked_and_what_ask_refuses_is_refused_before_anything_is_written(
        registry_db: str) -> None:
    with session() as db:
        delegate = factories.person(db, "Dee Legate")
        away = factories.person(db, "Away Person", active=False)
        away.delegate_id = delegate.id
        gone = factories.person(db, "Gone Person", active=False)
        requester = factories.person(db, "Rita Requester")
    with session() as db:
        [step] = ask_many(db, [_ask(away, "away")])
        assert step.person_id == delegate.id
    for refused, match in (([_ask(requester, "r-ok", kind="form"), _ask(gone, "r-gone")], "no active delegate"),
                           ([_ask(requester, "r-own", requested_by_id=requester.id)], "cannot approve their own"),
                           ([_ask(requester, "r-dup"), _ask(requester, "r-dup")], "same key twice")):
        with pytest.raises((StepRefused, ValueError), match=match), session() as db:
            ask_many(db, refused)
    with session() as db:
        assert [s.key for s in db.exec(select(HumanStep))] == ["away"] and _requested(db) == ["away"]


def test_of_two_callers_asking_overlapping_people_at_once_each_step_is_asked_once(any_db: str) -> None:
    people = _people(4)
    inserted, release = threading.Event(), threading.Event()

    def _first() -> dict[str, int]:
        with session() as db:
            steps = ask_many(db, [_ask(p, f"race-{n}") for n, p in enumerate(people[:3])])
            inserted.set()
            release.wait(timeout=20)  # written, not committed, while the second caller asks
            return {s.key: s.id or 0 for s in steps}

    def _second() -> dict[str, int]:
        with session() as db:
            return {s.key: s.id or 0 for s in ask_many(db, [_ask(p, f"race-{n}") for n, p in enumerate(people)
                                                            if n >= 1])}

    first = in_background(_first)
    assert inserted.wait(timeout=20)
    second = in_background(_second)
    time.sleep(1)
    assert second[0].is_alive(), f"the second insert should wait for the first transaction: {second[1]!r}"
    release.set()
    won, got = finished(*first, "the first caller"), finished(*second, "the second caller")
    assert got["race-1"] == won["race-1"] and got["race-2"] == won["race-2"] and "race-3" in got
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 4
        assert _requested(db) == ["race-0", "race-1", "race-2", "race-3"]


def test_many_messages_are_queued_once_each_and_delivered_when_their_unit_commits(smtp: Mailbox) -> None:
    people = _people(3)
    with session() as db:
        steps = ask_many(db, [_ask(p, f"msg-{p.id}") for p in people])
    with unit() as db:
        ids = enqueue_many(db, [_message(p, f"msg-{p.id}", s) for p, s in zip(people, steps, strict=True)])
        assert smtp.messages() == [], "nothing leaves before the transaction commits"
    assert all(len(i) == 1 for i in ids)
    mails = smtp.wait_for(3)
    assert all(sum(p.email in m.to for m in mails) == 1 for p in people)
    with unit() as db:
        assert enqueue_many(db, [_message(p, f"msg-{p.id}", s) for p, s in zip(people, steps, strict=True)]) == ids
        with pytest.raises(TemplateProblem):
            enqueue_many(db, [_message(people[0], "msg-new", steps[0]),
                              Queued(key="msg-bad", recipient_id=people[0].id or 0, template="step_reminder",
                                     context={})])
    time.sleep(0.5)
    with session() as db:
        rows = db.exec(select(Notification)).all()
    assert len(rows) == 3 and {r.status for r in rows} == {DeliveryStatus.sent} and len(smtp.messages()) == 3


def test_of_two_callers_queueing_the_same_messages_at_once_each_is_queued_once(any_db: str) -> None:
    people = _people(3)
    with session() as db:
        steps = ask_many(db, [_ask(p, f"q-{p.id}") for p in people])
    messages = [_message(p, f"q-{p.id}", s) for p, s in zip(people, steps, strict=True)]
    inserted, release = threading.Event(), threading.Event()

    def _first() -> list[list[int]]:
        with session() as db:
            ids = enqueue_many(db, messages[:2])
            inserted.set()
            release.wait(timeout=20)
            return ids

    def _second() -> list[list[int]]:
        with session() as db:
            return enqueue_many(db, messages)

    first = in_background(_first)
    assert inserted.wait(timeout=20)
    second = in_background(_second)
    time.sleep(1)
    assert second[0].is_alive(), f"the second insert should wait for the first transaction: {second[1]!r}"
    release.set()
    won, got = finished(*first, "the first caller"), finished(*second, "the second caller")
    assert got[:2] == won and len(got[2]) == 1
    with session() as db:
        keys = [n.idempotency_key for n in db.exec(select(Notification).order_by(col(Notification.id)))]
    assert sorted(keys) == sorted(f"q-{p.id}#0" for p in people)


def test_a_whole_roster_is_asked_and_alerted_at_once_each_link_answering_its_own_step(smtp: Mailbox,
                                                                                      gateway: Gateway) -> None:
    people = _people(3)

    def _requests() -> list[Request]:
        return [Request(_ask(p, f"roster-{p.id}"), template="step_reminder", context={}) for p in people]

    with unit() as db:
        steps = request_many(db, _requests())
    mails = smtp.wait_for(3)
    for mail in mails:
        [step] = [s for p, s in zip(people, steps, strict=True) if p.email in mail.to]
        assert step.title in mail.subject
        answer_link(gateway.client, links_in(mail.html)[0], {"decision": "approve"}).raise_for_status()
    with unit() as db:
        assert [s.id for s in request_many(db, _requests())] == [s.id for s in steps]
    time.sleep(0.5)
    with session() as db:
        answered = {s.id: s.answered_by_id for s in db.exec(select(HumanStep))}
        assert len(db.exec(select(Notification)).all()) == 3
    assert answered == {s.id: s.person_id for s in steps} and len(smtp.messages()) == 3


def test_units_inside_delivering_meanwhile_are_delivered_while_the_caller_goes_on(smtp: Mailbox) -> None:
    people = _people(2)
    with delivering_meanwhile():
        with unit() as db:
            request_many(db, [Request(_ask(people[0], "meanwhile-0"), template="step_reminder", context={})])
        assert people[0].email in smtp.wait_for(1)[0].to, "the first unit's message left while the caller went on"
        with unit() as db:
            request_many(db, [Request(_ask(people[1], "meanwhile-1"), template="step_reminder", context={})])
    assert len(smtp.messages()) == 2, "everything handed over is delivered before it ends"
    with session() as db:
        assert {n.status for n in db.exec(select(Notification))} == {DeliveryStatus.sent}


def test_a_delivery_that_fails_meanwhile_is_raised_where_the_caller_waits(smtp: Mailbox,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    [person] = _people(1)

    def broken(**_: object) -> None:
        raise RuntimeError("delivery broke")

    monkeypatch.setattr(notify, "deliver_due", broken)
    with pytest.raises(RuntimeError, match="delivery broke"), delivering_meanwhile(), unit() as db:
        request_many(db, [Request(_ask(person, "broken"), template="step_reminder", context={})])
    with session() as db:  # committed all the same: the sweep's delivery sends it
        assert [n.status for n in db.exec(select(Notification))] == [DeliveryStatus.pending]
