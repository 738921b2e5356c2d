from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from prefect import flow
from prefect.flow_runs import pause_flow_run
from sqlmodel import select

from engine import runs
from engine.human_steps import StepOutcome, ask
from engine.runs import current_run_id
from registry import HumanStep, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway
from tests.flows.background import finished, in_background
from tests.links import answer_link


@flow(name="ops-test-answered-before-it-pauses")
def _answered_before_it_pauses(key: str, person_id: int, ready: float) -> StepOutcome | None:
    with session() as db:
        ask(db, key=key, person_id=person_id, form="approval", kind="approval", title="Approve the race",
            subject_type="test", subject_id=1, due_at=utcnow() + timedelta(hours=1), flow_run_id=current_run_id())
    time.sleep(ready)  # the answer lands here, while the run is still running
    return pause_flow_run(wait_for_input=StepOutcome, timeout=60, poll_interval=1, key="race")


def test_an_answer_that_beats_the_pause_still_resumes_the_run_within_seconds(prefect_api: str,
                                                                              gateway: Gateway) -> None:
    key = f"race-{uuid.uuid4().hex[:8]}"
    with session() as db:
        approver = factories.person(db)
        approver_id = approver.id or 0
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=_answered_before_it_pauses(key, approver_id, 2.0)),
                              daemon=True)
    thread.start()
    step = None
    deadline = time.monotonic() + 20
    while step is None and time.monotonic() < deadline:
        time.sleep(0.05)
        with session() as db:
            step = db.exec(select(HumanStep).where(HumanStep.key == key)).first()
    assert step is not None
    with session() as db:
        token = factories.link(db, step)
    answered_at = time.monotonic()
    assert answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "approve"}).status_code == 200
    thread.join(timeout=30)
    assert not thread.is_alive(), "the paused run was never resumed"
    result = outcome["result"]
    assert isinstance(result, StepOutcome) and result.outcome == "answered"
    assert time.monotonic() - answered_at < 15, "resumed by the gateway's retry, not by the minute sweep"
    with session() as db:
        assert db.get(HumanStep, step.id).resume_pending is False  # type: ignore[union-attr]


@flow(name="ops-test-waits-for-a-step")
def _waits_for(step_id: int) -> str:
    try:
        return runs.wait_for_step(step_id).outcome
    except runs.StepHeldElsewhere as held:
        return f"held by {held.holder}"


@flow(name="ops-test-ends-at-once")
def _ends_at_once() -> str | None:
    return current_run_id()


def _holder(step_id: int) -> str | None:
    with session() as db:
        step = db.get(HumanStep, step_id)
        return step.flow_run_id if step else None


def test_a_second_run_waiting_for_a_held_step_ends_and_the_answer_resumes_the_holder(prefect_api: str,
                                                                                     gateway: Gateway) -> None:
    with session() as db:
        step = factories.step(db, factories.person(db))
        step_id, token = step.id or 0, factories.link(db, step)
    first = in_background(lambda: _waits_for(step_id))
    holder = _until_set(lambda: _holder(step_id))

    said = finished(*in_background(lambda: _waits_for(step_id)), "the duplicate run", seconds=20)
    assert said.startswith("held by ") and said.endswith(f"({holder})"), said
    assert _holder(step_id) == holder, "the duplicate did not take the step"
    assert answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "approve"}).status_code == 200
    assert finished(*first, "the run holding the step", seconds=30) == "answered"


def test_a_run_takes_a_step_over_from_a_holder_that_has_ended(prefect_api: str, gateway: Gateway) -> None:
    ended = _ends_at_once()
    with session() as db:
        step = factories.step(db, factories.person(db), flow_run_id=ended)
        step_id, token = step.id or 0, factories.link(db, step)
    waiting = in_background(lambda: _waits_for(step_id))
    taker = _until_set(lambda: _holder(step_id) if _holder(step_id) != ended else None)
    _until_set(lambda: "paused" if _paused(taker) else None)
    assert answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "approve"}).status_code == 200
    assert finished(*waiting, "the run that took the step over", seconds=30) == "answered"


def _paused(run_id: str) -> bool:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return state is not None and state.is_paused()


def _until_set(probe: Callable[[], str | None], seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")
