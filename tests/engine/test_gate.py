"""A gate asks, waits with the run paused, and resumes it with the Decision: who decided what, and why."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from sqlmodel import col, select

from engine import gate
from engine.answers import Decision, Verdict
from engine.forms import ActionDone, ActionVerification
from engine.sweep import sweep
from engine.work import unit
from registry import HumanStep, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.links import answer_link, links_in


@flow(name="ops-test-gate")
def _gated(key: str, approver_id: int, requester_id: int) -> Decision | str:
    with unit() as db:
        step = gate.ask(db, key=key, approver_id=approver_id, requested_by_id=requester_id, title="Approve the spend",
                        subject_type="test", subject_id=1, due_at=utcnow() + timedelta(hours=1),
                        template="step_reminder", context={}, actor="test")
        step_id = step.id or 0
    decided = gate.wait(step_id)
    return decided.detail if isinstance(decided, gate.HeldElsewhere) else decided


@flow(name="ops-test-form-gate")
def _form_gated(key: str, approver_id: int, requester_id: int, minutes: float) -> ActionDone | Decision | str:
    """A gate asking for a form of its own (not an approval), waited for typed."""
    with unit() as db:
        step = gate.ask(db, key=key, approver_id=approver_id, requested_by_id=requester_id, form="action_done",
                        title="Say what was done about the spill", subject_type="test", subject_id=1,
                        due_at=utcnow() + timedelta(minutes=minutes), template="step_reminder", context={},
                        actor="test")
        step_id = step.id or 0
    answered = gate.wait_for(step_id, ActionDone)
    return answered.detail if isinstance(answered, gate.HeldElsewhere) else answered


def _paused(run_id: str) -> None:
    """Wait until the run is paused at its gate: expired any sooner, the step's outcome is in the registry
    before the run asks for it, which is another test."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(uuid.UUID(run_id)).state
            if state is not None and state.type == StateType.PAUSED:
                return
            time.sleep(0.1)
    raise AssertionError(f"flow run {run_id} never paused")


def _step(key: str) -> HumanStep:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with session() as db:
            if (found := db.exec(select(HumanStep).where(HumanStep.key == key)).first()) is not None:
                return found
        time.sleep(0.1)
    raise AssertionError(f"no step {key}")


def test_a_rejection_from_the_link_resumes_the_gate_with_who_rejected_and_why(prefect_api: str, smtp: Mailbox,
                                                                             gateway: Gateway) -> None:
    key = f"gate-{uuid.uuid4().hex[:8]}"
    with session() as db:
        approver, requester = factories.person(db, "Ann Approver"), factories.person(db, "Rob Requester")
        ids = (approver.id or 0, requester.id or 0)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(out=_gated(key, *ids)), daemon=True)
    thread.start()
    [mail] = smtp.wait_for(1, seconds=30)
    assert approver.email in mail.to, "the gate's message goes to the approver, queued with the step"
    _step(key)
    response = answer_link(gateway.client, links_in(mail.html)[0], {"decision": "reject", "comment": "Over budget."})
    assert response.status_code == 200
    thread.join(timeout=60)
    decided = result.get("out")
    assert isinstance(decided, Decision), decided
    assert (decided.verdict, decided.by, decided.by_name, decided.comment) == (
        Verdict.rejected, approver.email, "Ann Approver", "Over budget.")
    assert not decided.approved and decided.answered


def test_a_second_run_at_a_gate_another_live_run_waits_at_is_told_so(prefect_api: str, smtp: Mailbox,
                                                                     gateway: Gateway) -> None:
    key = f"gate-{uuid.uuid4().hex[:8]}"
    with session() as db:
        approver, requester = factories.person(db), factories.person(db)
        ids = (approver.id or 0, requester.id or 0)
    first: dict[str, object] = {}
    thread = threading.Thread(target=lambda: first.update(out=_gated(key, *ids)), daemon=True)
    thread.start()
    step = _step(key)
    deadline = time.monotonic() + 30
    while step.flow_run_id is None and time.monotonic() < deadline:
        time.sleep(0.1)
        step = _step(key)
    second = _gated(key, *ids)
    assert isinstance(second, str) and second.startswith("already awaited by flow run")
    [mail] = smtp.wait_for(1, seconds=30)
    answer_link(gateway.client, links_in(mail.html)[0], {"decision": "approve"}).raise_for_status()
    thread.join(timeout=60)
    decided = first.get("out")
    assert isinstance(decided, Decision) and decided.approved
    assert len(smtp.messages()) == 1, "the duplicate run asked nobody again"


def test_a_gate_with_a_form_of_its_own_resumes_the_run_with_the_answer_as_that_form(
        prefect_api: str, smtp: Mailbox, gateway: Gateway) -> None:
    key = f"gate-{uuid.uuid4().hex[:8]}"
    with session() as db:
        asked = factories.person(db, "Fern Facilities")
        requester_id = asked.id or 0  # a form gate is no approval: whoever requested it may answer it
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(out=_form_gated(key, requester_id, requester_id, 60)),
                              daemon=True)
    thread.start()
    [mail] = smtp.wait_for(1, seconds=30)
    step = _step(key)
    assert (step.kind, step.form) == ("form", "action_done")
    answer_link(gateway.client, links_in(mail.html)[0], {"what_was_done": "Absorbent laid, drain covered."}) \
        .raise_for_status()
    thread.join(timeout=60)
    answered = result.get("out")
    assert isinstance(answered, ActionDone), answered
    assert answered.what_was_done == "Absorbent laid, drain covered."
    assert gate.answer(step.id or 0, ActionDone) == answered, "read again after the wait, the same answer"
    with pytest.raises(TypeError, match="asks the 'action_done' form"):
        gate.answer(step.id or 0, ActionVerification)


def test_a_form_gate_nobody_answers_resumes_the_run_with_an_expired_decision(
        prefect_api: str, smtp: Mailbox) -> None:
    key = f"gate-{uuid.uuid4().hex[:8]}"
    with session() as db:
        ids = (factories.person(db).id or 0, factories.person(db).id or 0)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(out=_form_gated(key, *ids, 1)), daemon=True)
    thread.start()
    step = _step(key)
    deadline = time.monotonic() + 30
    while step.flow_run_id is None and time.monotonic() < deadline:
        time.sleep(0.1)
        step = _step(key)
    assert gate.answer(step.id or 0, ActionDone) is None, "pending"
    _paused(step.flow_run_id or "")

    swept = sweep(now=utcnow() + timedelta(minutes=2))

    assert swept.expired == [step.id]
    thread.join(timeout=60)
    decided = result.get("out")
    assert isinstance(decided, Decision) and decided.verdict == Verdict.expired and not decided.answered


@flow(name="ops-test-gate-digest")
def _digest_gated(key: str, approver_id: int, requester_id: int) -> list[object]:
    """Three gates in one message (two approvals and a form of its own), then a wait on each in turn."""
    with unit() as db:
        asks = gate.Digest(key=key, template="action_request", context={}, items_as="actions")
        due = utcnow() + timedelta(hours=1)
        step_ids = []
        for n, form in enumerate(("approval", "approval", "action_done")):
            step = asks.ask(db, item={"description": f"Gate {n}", "finding": "test", "severity": "low",
                                      "due_at": due},
                            key=f"{key}-{n}", approver_id=approver_id, requested_by_id=requester_id, form=form,
                            title=f"Gate {n}", subject_type="test", subject_id=n, due_at=due, actor="test")
            step_ids.append(step.id or 0)
        asks.queue(db)
    first, second, third = step_ids
    return [gate.wait(first), gate.wait(second), gate.wait_for(third, ActionDone)]


def _pause_key(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
    return (state.state_details.pause_key or "") if state is not None and state.type == StateType.PAUSED else ""


def _until_paused_at(run_id: str, pause_key: str) -> None:
    deadline = time.monotonic() + 30
    while _pause_key(run_id) != pause_key:
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {run_id} never paused at {pause_key} (at {_pause_key(run_id)!r})")
        time.sleep(0.1)


def test_gates_asked_in_one_digest_each_resume_the_run_with_their_own_answer(prefect_api: str, smtp: Mailbox,
                                                                              gateway: Gateway) -> None:
    key = f"digest-{uuid.uuid4().hex[:8]}"
    with session() as db:
        approver, requester = factories.person(db, "Ann Approver"), factories.person(db, "Rob Requester")
        ids = (approver.id or 0, requester.id or 0)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(out=_digest_gated(key, *ids)), daemon=True)
    thread.start()
    [mail] = smtp.wait_for(1, seconds=30)
    assert approver.email in mail.to
    first, second, third = links_in(mail.html)
    steps = [_step(f"{key}-{n}") for n in range(3)]
    run_id = steps[0].flow_run_id or ""
    assert run_id and all(s.flow_run_id == run_id for s in steps), "every gate is held by the run that asked it"
    assert [s.kind for s in steps] == ["approval", "approval", "form"]
    _until_paused_at(run_id, f"step-{steps[0].id}")

    # The third gate answered while the run waits at the first: it resumes the run, which waits on at the first.
    answer_link(gateway.client, third, {"what_was_done": "Bund drained."}).raise_for_status()
    _until_paused_at(run_id, f"step-{steps[0].id}-1")
    answer_link(gateway.client, first, {"decision": "reject", "comment": "Not this quarter."}).raise_for_status()
    _until_paused_at(run_id, f"step-{steps[1].id}")
    answer_link(gateway.client, second, {"decision": "approve"}).raise_for_status()
    thread.join(timeout=60)

    decided = result.get("out")
    assert isinstance(decided, list), decided
    rejected, approved, done = decided
    assert isinstance(rejected, Decision) and isinstance(approved, Decision) and isinstance(done, ActionDone)
    assert (rejected.step_id, rejected.verdict, rejected.comment) == (steps[0].id, Verdict.rejected,
                                                                        "Not this quarter.")
    assert (approved.step_id, approved.verdict, approved.by) == (steps[1].id, Verdict.approved, approver.email)
    assert done.what_was_done == "Bund drained."

    again = _digest_gated(key, *ids)
    assert [getattr(d, "verdict", None) for d in again[:2]] == [Verdict.rejected, Verdict.approved]
    assert again[2] == done, "a re-run reads every gate as it was answered"
    time.sleep(1)
    assert len(smtp.messages()) == 1, "one message for the three gates, and none again on a re-run"
    with session() as db:
        assert len(db.exec(select(HumanStep).where(col(HumanStep.key).startswith(key))).all()) == 3
