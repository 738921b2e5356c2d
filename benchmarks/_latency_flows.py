"""The two flows benchmarks/approval_latency.py times, and `serve()`, which its runner subprocess calls.

baseline: bare Prefect, suspended for typed input and resumed through the API.
ours:     an opsdirector approval step, suspended by engine.runs.wait_for_step and resumed by the link gateway.

Both return at once after the resume, so what is timed is the road back to RUNNING, not work in the flow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, cast

from prefect import flow
from prefect.flow_runs import suspend_flow_run
from pydantic import BaseModel

# At the top, as the project's own flows do: a resumed run pays for these imports before it is RUNNING.
from engine.human_steps import ask
from engine.runs import current_run_id, wait_for_step
from registry import session
from registry.clock import utcnow

BASELINE_FLOW = "latency-baseline"
OURS_FLOW = "latency-ours"
DEPLOYMENT = "bench"


class Decision(BaseModel):
    decision: Literal["approve", "reject"]
    comment: str = ""


@flow(name=BASELINE_FLOW, persist_result=False)
def baseline() -> str:
    given = suspend_flow_run(wait_for_input=Decision, timeout=600, key="gate")
    assert given is not None
    return given.decision


@flow(name=OURS_FLOW, persist_result=False)
def ours(key: str, person_id: int) -> str:
    with session() as db:
        step = ask(db, key=key, person_id=person_id, form="approval", kind="approval",
                   title="Latency benchmark approval", subject_type="benchmark", subject_id=0,
                   due_at=utcnow() + timedelta(hours=1), flow_run_id=current_run_id())
        step_id = step.id
    assert step_id is not None
    return wait_for_step(step_id).outcome


def serve() -> None:
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    deployments = [cast(RunnerDeployment, f.to_deployment(name=DEPLOYMENT)) for f in (baseline, ours)]
    prefect_serve(*deployments, print_starting_message=False)
