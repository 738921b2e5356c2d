"""Runs a process starts: a follow-up of itself at a deadline, and child runs (fan-out), each keyed so that a
re-run or a crashed run's take-over starts nothing twice (Prefect's idempotency key per deployment)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.runtime import deployment, flow_run

from engine import runs
from engine.work import previewing


def follow_up(*, key: str, at: datetime, parameters: dict[str, Any], run_name: str) -> str:
    """Schedule this deployment to run again at `at` with `parameters`; what was done, for the run's outcome.

    Outside a deployment (a flow called directly) nothing is scheduled: run it again after `at`."""
    if previewing():
        return f"preview: a follow-up run would be scheduled for {at.isoformat()}"
    if not deployment.get_id():
        return f"not running from a deployment: run again after {at.isoformat()} to carry on"
    started = runs.start(f"{flow_run.get_flow_name()}/{deployment.get_name()}", parameters, scheduled_time=at,
                         idempotency_key=key, run_name=run_name)
    return f"follow-up scheduled for {at.isoformat()} (flow run {started.id})"


def fan_out(deployment_name: str, *, key: str, parameters: dict[str, Any], run_name: str,
            at: datetime | None = None) -> str | None:
    """Start one child run of `deployment_name` ("flow/deployment") keyed `key`; its flow run id, or None in a
    preview. Started again under the same key, the same run is returned."""
    if previewing():
        return None
    started = runs.start(deployment_name, parameters, scheduled_time=at, idempotency_key=key, run_name=run_name)
    return str(started.id)
