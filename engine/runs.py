"""The Prefect API as the engine needs it: resume a waiting run, wait for a step inside a flow."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import Flow, State
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.runtime import deployment, flow_run
from sqlalchemy import update
from sqlmodel import col

from engine.human_steps import StepOutcome, outcome_of, seconds_until
from registry import HumanStep, session
from registry.db import database_url

log = logging.getLogger(__name__)

ORIGIN_TAG = "takeover-of:"  # on a take-over run: the run whose occasion it carries on
GENERATION_TAG = "takeover-generation:"  # how many runs of this lineage have died before this one
TAKEN_OVER_TAG = "taken-over"  # on a dead run once a new one carries it on
REGISTRY_LABEL = "opsdirector.registry"  # on a run once it starts: the registry its process state lives in


class StepHeldElsewhere(RuntimeError):
    """Another live run already waits for this step: this one is a duplicate and must not steal it."""

    def __init__(self, step_id: int, holder: str) -> None:
        super().__init__(f"step {step_id} is already awaited by flow run {holder}")
        self.step_id, self.holder = step_id, holder


def resume(flow_run_id: str, outcome: StepOutcome) -> bool:
    """Resume a paused or suspended run with `outcome` as its input.

    True when the run took it, or can never take it (it ended, or Prefect no longer knows it): either way
    nobody needs to try again. The answer itself is in the registry whatever happens here.
    """
    try:
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:
                log.warning("flow run %s no longer exists; its answer stays recorded, nothing to resume", flow_run_id)
                return True
            if run.state is not None and run.state.is_final():
                return True
            result = client.resume_flow_run(UUID(flow_run_id), run_input=outcome.model_dump(mode="json"))
    except Exception as error:  # the API being down must not lose the answer: the sweep retries
        log.warning("could not resume flow run %s: %s", flow_run_id, error)
        return False
    return result.status == SetStateStatus.ACCEPT


def hand_back(step_id: int) -> bool:
    """Resume the run waiting for a decided step and clear its debt; True when nothing is owed any more."""
    with session() as db:
        step = db.get(HumanStep, step_id)
        if step is None or not step.resume_pending:
            return True
        decided, flow_run_id = outcome_of(step), step.flow_run_id
    if decided is None or flow_run_id is None or not resume(flow_run_id, decided):
        return False
    with session() as db:
        db.execute(update(HumanStep).where(col(HumanStep.id) == step_id, col(HumanStep.flow_run_id) == flow_run_id)
                   .values(resume_pending=False).execution_options(synchronize_session=False))
    return True


def hand_back_soon(step_id: int, delays: tuple[float, ...] = (0.5, 1, 2, 4)) -> None:
    """Retry for a few seconds: an answer can arrive just before its run has finished suspending."""
    for delay in delays:
        time.sleep(delay)
        if hand_back(step_id):
            return


def start(deployment_name: str, parameters: dict[str, Any] | None = None, *,
          scheduled_time: datetime | None = None, idempotency_key: str | None = None,
          run_name: str | None = None) -> FlowRun:
    """Create a run of a deployment as the UI's Run button does, without waiting for it."""
    from prefect.deployments import run_deployment

    created = run_deployment(deployment_name, parameters=parameters or {}, scheduled_time=scheduled_time,
                             idempotency_key=idempotency_key, flow_run_name=run_name, timeout=0,
                             as_subflow=False)
    assert isinstance(created, FlowRun), "called from async code: use the async client instead"
    return created


def current_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def registry_id() -> str:
    """Which registry this process works on, without naming it (a database URL may hold a password)."""
    return hashlib.sha256(database_url().encode()).hexdigest()[:16]


def stamp_process(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """on_running hook of every flow: record the run's machine and process (host:pid, as Prefect's process
    worker does; a runner leaves it empty), so a sweep on the same machine can tell at once that it died, and
    its registry, so a sweep never carries on another registry's run (a reset one's, or another test's)."""
    if flow_run.deployment_id is None:  # only deployment runs are taken over
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, infrastructure_pid=f"{socket.gethostname()}:{os.getpid()}")
            client.update_flow_run_labels(flow_run.id, {REGISTRY_LABEL: registry_id()})
    except Exception as error:  # the heartbeat still tells, only later
        log.warning("could not record the process of flow run %s: %s", flow_run.id, error)


def origin_of(tags: list[str], run_id: str) -> str:
    return next((tag.removeprefix(ORIGIN_TAG) for tag in tags if tag.startswith(ORIGIN_TAG)), run_id)


def generation_of(tags: list[str]) -> int:
    return next((int(tag.removeprefix(GENERATION_TAG)) for tag in tags
                 if tag.startswith(GENERATION_TAG) and tag.removeprefix(GENERATION_TAG).isdigit()), 0)


def origin_run_id() -> str | None:
    """The run this run's occasion belongs to: the first of its lineage when it took over a dead run, else
    itself. A process keyed by the run that started it keys by this, so a take-over continues the same occasion."""
    run_id = current_run_id()
    return origin_of(list(flow_run.get_tags()), run_id) if run_id else None


def _holder_alive(flow_run_id: str) -> str | None:
    """The holder's name when it is a live run (waiting, running or about to); None when it is final,
    crashed, unknown, or cannot be asked (the take-over decides about those, not a duplicate run)."""
    try:
        with get_client(sync_client=True) as client:
            holder = client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return None
    if holder.state is None or holder.state.is_final() or TAKEN_OVER_TAG in holder.tags:
        return None
    if holder.state.is_running():
        from engine.takeover import is_dead  # the take-over's own test of a dead process, not a second one

        if is_dead(holder):
            return None
    return f"{holder.name} ({holder.id})"


def _hold(step_id: int, run_id: str | None) -> None:
    """Make this run the one the step's answer resumes, unless a live run already holds it.

    The holder is replaced with one conditional UPDATE on the holder this run saw, so of two runs taking a
    step over from a dead holder at once, only one gets it.
    """
    if run_id is None:
        return
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        holder = step.flow_run_id
    if holder == run_id:
        return
    if holder is not None and (alive := _holder_alive(holder)) is not None:
        raise StepHeldElsewhere(step_id, alive)
    with session() as db:
        held_by = col(HumanStep.flow_run_id).is_(None) if holder is None else col(HumanStep.flow_run_id) == holder
        taken = db.execute(update(HumanStep).where(col(HumanStep.id) == step_id, held_by)
                           .values(flow_run_id=run_id).execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            db.rollback()
            step = db.get(HumanStep, step_id)
            assert step is not None
            raise StepHeldElsewhere(step_id, step.flow_run_id or "?")


def wait_for_step(step_id: int) -> StepOutcome:
    """Inside a flow: the step's outcome, suspending the run until it is decided.

    Under a deployment the run is suspended (the process exits; Prefect re-runs the flow after the resume);
    otherwise it is paused in place. Either way the registry row, not the run input, is what we return: a
    resume by the answer to another step the run holds leaves it waiting for this one.
    A run that finds a live run already waiting for the step raises StepHeldElsewhere instead of waiting:
    the answer resumes the run that holds the step. It takes the step over only from a holder that is final,
    crashed or gone (a take-over after a crash).
    """
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        decided = outcome_of(step)
        timeout = seconds_until(step.expires_at)
    if decided is not None:
        return decided
    _hold(step_id, current_run_id())
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        # Answered while the previous holder still held it: its resume went nowhere, so do not wait for one.
        if (decided := outcome_of(step)) is not None:
            return decided
    woken = 0
    while True:
        # A run holding several steps (gates asked in one digest) is resumed by the answer to any of them: while
        # this one is still pending it waits again, under a key of its own each time (Prefect refuses a pause key
        # it has seen, which is how a past wait returns its input at once when a suspended run is re-run).
        key = f"step-{step_id}" if woken == 0 else f"step-{step_id}-{woken}"
        if deployment.get_id():
            suspend_flow_run(wait_for_input=StepOutcome, timeout=timeout, key=key)
        else:
            pause_flow_run(wait_for_input=StepOutcome, timeout=timeout, poll_interval=1, key=key)
        with session() as db:
            step = db.get(HumanStep, step_id)
            assert step is not None
            if (decided := outcome_of(step)) is not None:
                return decided
            timeout = seconds_until(step.expires_at)
        woken += 1


def process_flow(name: str) -> Any:
    """The @flow of a process: its name (the deployments' prefix), prints logged, and its run stamped with the
    process that runs it, so the sweep can tell a dead run from a live one and finish it (engine.takeover).
    A function taking one `params` model becomes a flow of its fields (engine.parameters: the UI's Run form)."""
    from prefect import flow

    from engine import parameters

    def decorate(fn: Any) -> Any:
        model = parameters.model_of(fn)
        if model is None:
            return flow(name=name, log_prints=True, on_running=[stamp_process])(fn)
        return parameters.ProcessFlow(fn, model, name=name, log_prints=True, on_running=[stamp_process])

    return decorate
