"""Answer appliers (engine.processes.Applier): what a process declares an answer changes takes effect the moment
the gateway records it, and the sweep catches up an answer recorded without taking effect; once, either way."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from sqlmodel import Session, col, select

from engine import appliers, findings, gate, links, processes, runs
from engine.answers import answer_of
from engine.forms import Approval
from engine.human_steps import ask, record_answer
from engine.once import update_once
from engine.processes import Applier, DeclarationProblem, Process
from engine.sweep import sweep
from engine.work import unit
from registry import Direction, HumanStep, KpiDefinition, StepStatus, session, trail
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.links import answer_link

SUBJECT = "kpi_target"  # the test process's steps: approve a KPI's proposed target
PROPOSED = "proposed target"
calls: list[int] = []
failing: list[int] = []  # step ids whose first application fails, as a database gone away would


def _apply(db: Session, step: HumanStep) -> bool:
    """An approved target takes effect at once; applied again, it changes nothing."""
    calls.append(step.id or 0)
    if step.id in failing:
        failing.remove(step.id)
        raise RuntimeError("the registry went away mid-application")
    approval = answer_of(step, Approval)
    if approval is None or approval.decision != "approve":
        return False
    proposed = float(step.details[PROPOSED])
    if not update_once(db, KpiDefinition, step.subject_id, where=[col(KpiDefinition.target) != proposed],
                       values={"target": proposed}):
        return False
    trail.record(db, actor="kpi-targets", action="kpi.target_changed", entity_type="kpi_definition",
                 entity_id=step.subject_id, data={"target": proposed, "step_id": step.id})
    return True


def _unapplied(db: Session) -> list[int]:
    """Approved target steps whose KPI does not have that target yet (few rows in a test; a process's own query
    reads them from its unfinished rows by an index)."""
    rows = db.exec(select(HumanStep, KpiDefinition).join(KpiDefinition, col(KpiDefinition.id) == HumanStep.subject_id)
                   .where(HumanStep.subject_type == SUBJECT, HumanStep.status == StepStatus.answered)).all()
    return [step.id or 0 for step, kpi in rows
            if (step.answer or {}).get("decision") == "approve" and kpi.target != float(step.details[PROPOSED])]


TARGETS = Process(name="kpi-targets", title="KPI targets", actor="kpi-targets",
                  appliers=(Applier(SUBJECT, _apply, _unapplied),))


@pytest.fixture(autouse=True)
def _declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "discover", lambda: {TARGETS.name: TARGETS})
    calls.clear()
    failing.clear()


def _proposal(target: float) -> tuple[int, int, str]:
    """A KPI at 95 and a step asking its owner to approve `target`; its id, the KPI's and the link's token."""
    with session() as db:
        owner = factories.person(db, "Kim Kpi")
        kpi = KpiDefinition(code=f"OTD{utcnow().timestamp()}", name="On-time delivery", unit="%", target=95,
                            direction=Direction.higher_is_better)
        db.add(kpi)
        db.flush()
        step = ask(db, key=f"kpi-{kpi.id}-target", person_id=owner.id or 0, form="approval",
                   title="Approve the new on-time delivery target", subject_type=SUBJECT, subject_id=kpi.id or 0,
                   due_at=utcnow() + timedelta(days=2), details={PROPOSED: target})
        return step.id or 0, kpi.id or 0, links.issue(db, step=step, person_id=owner.id or 0)


def _target(kpi_id: int) -> float:
    with session() as db:
        kpi = db.get(KpiDefinition, kpi_id)
        assert kpi is not None
        return kpi.target


def test_an_answer_takes_effect_the_moment_the_gateway_records_it(gateway: Gateway) -> None:
    step_id, kpi_id, token = _proposal(97.5)

    page = answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "approve", "comment": ""})

    assert page.status_code == 200
    assert _target(kpi_id) == 97.5, "changed when answered, not at a later run"
    assert calls == [step_id]
    assert sweep(now=utcnow()).applied == [], "nothing left for the sweep to catch up"
    assert calls == [step_id], "the sweep asked only what was not yet applied"


def test_a_rejection_is_recorded_and_changes_nothing(gateway: Gateway) -> None:
    step_id, kpi_id, token = _proposal(80.0)

    answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "reject", "comment": "Too low."}) \
        .raise_for_status()

    assert _target(kpi_id) == 95 and calls == [step_id]


def test_an_answer_whose_application_fails_is_kept_and_the_sweep_applies_it_once(gateway: Gateway) -> None:
    step_id, kpi_id, token = _proposal(98.0)
    failing.append(step_id)

    page = answer_link(gateway.client, f"{gateway.url}/s/{token}", {"decision": "approve", "comment": ""})

    assert page.status_code == 200 and "already been answered" not in page.text, "the person's answer stands"
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None and step.status == StepStatus.answered
    assert _target(kpi_id) == 95

    assert sweep(now=utcnow()).applied == [step_id]
    assert _target(kpi_id) == 98.0
    assert sweep(now=utcnow()).applied == []


def test_the_sweep_applies_an_answer_recorded_while_the_gateway_was_not_there(any_db: str) -> None:
    step_id, kpi_id, _ = _proposal(96.0)
    with session() as db:
        step, person = db.get(HumanStep, step_id), factories.person(db, "Deputy Dan")
        assert step is not None
        assert record_answer(db, step=step, person=person, answer={"decision": "approve", "comment": ""})

    first = sweep(now=utcnow())

    assert first.applied == [step_id] and _target(kpi_id) == 96.0
    assert sweep(now=utcnow()).applied == [] and calls == [step_id]
    assert appliers.apply_answered(step_id) is False, "applied again, it changes nothing"


def test_one_subject_type_applied_by_two_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    twice = Process(name="kpi-targets-again", title="KPI targets again", actor="kpi-targets",
                    appliers=(Applier(SUBJECT, _apply, _unapplied),))
    monkeypatch.setattr(processes, "discover", lambda: {TARGETS.name: TARGETS, twice.name: twice})
    with pytest.raises(DeclarationProblem, match="kpi-targets and kpi-targets-again"):
        appliers.appliers()
    takes_actions = Process(name="my-actions", title="Mine", actor="mine",
                            appliers=(Applier(findings.SUBJECT, _apply, _unapplied),))
    monkeypatch.setattr(processes, "discover", lambda: {takes_actions.name: takes_actions})
    with pytest.raises(DeclarationProblem, match="the engine and my-actions"):
        appliers.appliers()


def test_discovery_refuses_two_processes_applying_one_subject_type() -> None:
    again = Process(name="kpi-targets-again", title="KPI targets again", actor="kpi-targets",
                    appliers=(Applier(SUBJECT, _apply, _unapplied),))
    with pytest.raises(DeclarationProblem, match="'kpi_target' steps are applied by both kpi-targets and kpi-"):
        processes.check_declarations([TARGETS, again])
    doubled = Process(name="kpi-targets", title="KPI targets", actor="kpi-targets",
                      appliers=(Applier(SUBJECT, _apply, _unapplied), Applier(SUBJECT, _apply, _unapplied)))
    with pytest.raises(DeclarationProblem, match="kpi_target"):
        processes.check_declarations([doubled])
    processes.check_declarations([TARGETS])


@flow(name="ops-test-kpi-target")
def _awaits_the_target(key: str, kpi_id: int, approver_id: int) -> float:
    """Waits at a gate whose answer an applier applies, then reads what the answer changed."""
    with unit() as db:
        step = gate.ask(db, key=key, approver_id=approver_id, title="Approve the new target", subject_type=SUBJECT,
                        subject_id=kpi_id, due_at=utcnow() + timedelta(hours=1), template="step_reminder",
                        context={}, actor="test", details={PROPOSED: 99.0})
        step_id = step.id or 0
    gate.wait(step_id)
    return _target(kpi_id)


def test_the_sweep_applies_an_answer_before_it_resumes_the_run_waiting_for_it(
        prefect_api: str, smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway recorded the answer but neither applied it nor reached Prefect: the sweep does both, in that
    order, so the resumed run reads the new target, never the old one."""
    _, kpi_id, _ = _proposal(97.0)
    at_resume: list[float] = []
    hand_back = runs.hand_back

    def watched(step_id: int) -> bool:
        at_resume.append(_target(kpi_id))  # what the run would read, were it to wake at once
        return hand_back(step_id)

    monkeypatch.setattr(runs, "hand_back", watched)
    with session() as db:
        approver = factories.person(db, "Ada Approver")
    key = f"kpi-target-{uuid.uuid4().hex[:8]}"
    result: dict[str, float] = {}
    thread = threading.Thread(target=lambda: result.update(target=_awaits_the_target(key, kpi_id, approver.id or 0)),
                              daemon=True)
    thread.start()
    step = _waiting_step(key)
    with session() as db:
        held = db.get(HumanStep, step.id)
        assert held is not None
        assert record_answer(db, step=held, person=approver, answer={"decision": "approve", "comment": ""})

    swept = sweep(now=utcnow())

    assert swept.applied == [step.id] and swept.resumed == [step.id]
    assert at_resume == [99.0], "applied before the run was handed its answer"
    thread.join(timeout=60)
    assert result == {"target": 99.0}


def _waiting_step(key: str) -> HumanStep:
    """The gate's step once its run is paused waiting for it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with session() as db:
            step = db.exec(select(HumanStep).where(HumanStep.key == key)).first()
        if step is not None and step.flow_run_id:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(uuid.UUID(step.flow_run_id)).state
            if state is not None and state.type == StateType.PAUSED:
                return step
        time.sleep(0.1)
    raise AssertionError(f"no run paused at {key}")


def test_an_answer_named_as_owed_that_changes_nothing_is_logged(registry_db: str, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An applier whose `unapplied` and `apply` disagree would be asked again every minute, silently: it is said."""
    step_id, _, _ = _proposal(96.0)
    with session() as db:
        step, person = db.get(HumanStep, step_id), factories.person(db, "Deputy Dan")
        assert step is not None
        assert record_answer(db, step=step, person=person, answer={"decision": "reject", "comment": "No."})
    stuck = Process(name="kpi-targets", title="KPI targets", actor="kpi-targets",
                    appliers=(Applier(SUBJECT, _apply, lambda db: [step_id]),))
    monkeypatch.setattr(processes, "discover", lambda: {stuck.name: stuck})

    assert sweep(now=utcnow()).applied == []
    assert f"step {step_id}: its applier names its answer as not yet applied" in caplog.text
