"""A unit of work delivers what it queued once it commits; a preview runs the same path and keeps nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from engine.answers import AnswerMismatch, Verdict, answer_of, decision_of
from engine.forms import Approval
from engine.human_steps import record_answer
from engine.work import Digest, preview, previewing, request, unit
from registry import DeliveryStatus, HumanStep, Notification, Person, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.links import answer_link, links_in


def _ask(db: object, person: Person, key: str = "work-1") -> HumanStep:
    return request(db, key=key, person_id=person.id or 0, form="approval", kind="approval",  # type: ignore[arg-type]
                   title="Approve the spend", subject_type="test", subject_id=1, due_at=utcnow() + timedelta(days=2),
                   template="step_reminder", context={}, actor="test")


def test_a_request_is_delivered_when_its_unit_commits_and_its_link_answers_the_step(smtp: Mailbox,
                                                                                    gateway: Gateway) -> None:
    with session() as db:
        person = factories.person(db, "Ada Approver")
    with unit() as db:
        step = _ask(db, person)
        assert smtp.messages() == [], "nothing leaves before the transaction commits"
    [mail] = smtp.wait_for(1)
    assert person.email in mail.to and "Approve the spend" in mail.subject
    answer_link(gateway.client, links_in(mail.html)[0], {"decision": "approve", "comment": "fine"}).raise_for_status()
    with session() as db:
        stored = db.get(HumanStep, step.id)
        assert stored is not None
        decided = decision_of(db, stored)
        approval = answer_of(stored, Approval)
    assert decided is not None and decided.verdict == Verdict.approved and decided.by == person.email
    assert approval is not None and approval.comment == "fine"


def test_a_unit_that_fails_sends_nothing_and_keeps_nothing(smtp: Mailbox) -> None:
    with session() as db:
        person = factories.person(db)
    with pytest.raises(RuntimeError, match="half-way"), unit() as db:
        _ask(db, person)
        raise RuntimeError("half-way")
    with session() as db:
        assert db.exec(select(Notification)).all() == [] and db.exec(select(HumanStep)).all() == []
    assert smtp.messages() == []


def test_a_unit_inside_a_unit_joins_it_and_asking_again_queues_nothing(smtp: Mailbox) -> None:
    with session() as db:
        person = factories.person(db)
    with unit() as outer:
        _ask(outer, person)
        with unit() as inner:
            assert inner is outer
            _ask(inner, person)  # the same key: the same step, no second message
    smtp.wait_for(1)
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 1
        assert [n.status for n in db.exec(select(Notification))] == [DeliveryStatus.sent]
    assert len(smtp.messages()) == 1


def test_a_preview_renders_what_the_real_path_would_send_and_keeps_nothing(smtp: Mailbox) -> None:
    with session() as db:
        people = [factories.person(db, f"Owner {n}") for n in range(2)]
    with preview("test preview") as shown:
        assert previewing()
        with unit() as db:  # a task body, run for show
            asks = Digest(key="preview-digest", template="step_reminder", context={}, items_as="steps")
            for person in people:
                asks.ask(db, item={}, key=f"p-{person.id}", person_id=person.id or 0, form="approval",
                                kind="approval", title=f"Check for {person.name}", subject_type="test",
                                subject_id=1, due_at=utcnow() + timedelta(days=1), actor="test")
                request(db, key=f"single-{person.id}", person_id=person.id or 0, form="approval", kind="approval",
                        title=f"Sign for {person.name}", subject_type="test", subject_id=2,
                        due_at=utcnow() + timedelta(days=1), template="step_reminder", context={}, actor="test")
    assert not previewing()
    assert sorted(m.to for m in shown.messages) == sorted(p.email for p in people)
    assert all(m.subject.startswith("Reminder: Sign for") for m in shown.messages)
    with session() as db:
        assert db.exec(select(HumanStep)).all() == [] and db.exec(select(Notification)).all() == []
    assert smtp.messages() == []


def test_an_answer_that_no_longer_fits_its_form_is_refused_by_name(registry_db: str) -> None:
    with session() as db:
        person = factories.person(db)
        step = factories.step(db, person)
        assert record_answer(db, step=step, person=person, answer={"verdict": "approve"})  # a renamed field
        with pytest.raises(AnswerMismatch, match=f"step {step.id} \\(approval\\).*Approval"):
            answer_of(step, Approval)


# A fresh process, as a flow run is: how many objects the collector's full collections no longer rescan.
_FROZEN = """
import gc
from engine import work
counts = []
for _ in range(2):
    with work.delivering_meanwhile():
        pass
    counts.append(gc.get_freeze_count())
print(counts[0], counts[1])
"""


def test_a_process_leaves_its_imports_out_of_full_collections_once_before_its_first_roster() -> None:
    done = subprocess.run([sys.executable, "-c", _FROZEN], cwd=Path(__file__).resolve().parents[2],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = map(int, done.stdout.split())
    assert first > 50_000, "the imports a full collection rescanned (0.2-0.5 s of a drill's delivery)"
    assert second == first, "frozen once a process: what came after is collected as usual"
