from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

from prefect import flow
from prefect.flow_runs import pause_flow_run
from sqlmodel import select

from engine.human_steps import StepOutcome, ask
from engine.runs import current_run_id
from flows.demo import answer_link
from registry import HumanStep, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway


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
