"""prefect.yaml as the single source of deployments, for `ops serve` (prefect.serve does not read it)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)


def specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    document = yaml.safe_load(path.read_text())
    return [
        DeploymentSpec(name=d["name"], entrypoint=d["entrypoint"], description=d.get("description", ""),
                       tags=list(d.get("tags") or []), parameters=dict(d.get("parameters") or {}),
                       schedules=list(d.get("schedules") or []))
        for d in document.get("deployments", [])
    ]


def import_flow_modules(path: Path = PREFECT_YAML) -> list[str]:
    """Import every module prefect.yaml names, so what they register (the forms people answer) is known here.

    The gateway answers for every process without a list of them: a process's form lives in its own module.
    """
    modules = sorted({spec.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".") for spec in specs(path)})
    for module in modules:
        importlib.import_module(module)
    return modules


def runner_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """Every deployment in prefect.yaml as a RunnerDeployment, flows loaded from their entrypoints."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    built = []
    for spec in specs(path):
        flow: Any = load_flow_from_entrypoint(str(PROJECT_ROOT / spec.entrypoint), use_placeholder_flow=False)
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                     for s in spec.schedules]
        built.append(flow.to_deployment(
            name=spec.name, schedules=schedules, parameters=spec.parameters, tags=spec.tags,
        ))
    return built


def serve_all(path: Path = PREFECT_YAML, poll_seconds: float = 0.5, api_wait_seconds: float = 0) -> None:
    """Serve every deployment from this process; the poll interval bounds the wait after an approval.

    Schedules stay active when this process stops (Prefect pauses them by default): a stopped or restarted stack
    must never leave the quarterly audit or the deadline sweep paused, and the runs that fall due meanwhile are
    picked up by the next `ops serve`.

    With `api_wait_seconds`, the flows are loaded first and the API is waited for, so `ops up` can start this
    process alongside the Prefect server rather than after it.
    """
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    deployments = runner_deployments(path)
    if api_wait_seconds:
        from engine.stack import wait_until_up

        wait_until_up(f"{str(PREFECT_API_URL.value()).rstrip('/')}/health", api_wait_seconds)
    if removed := collapse_missed_runs([spec.name for spec in specs(path)]):
        print(f"{removed} scheduled runs that fell due while nothing served them removed; "
              "one catch-up run per deployment kept", flush=True)
    serve(*deployments, print_starting_message=False, query_seconds=poll_seconds, pause_on_shutdown=False)


def collapse_missed_runs(names: list[str]) -> int:
    """Delete all but the latest of each deployment's scheduled runs that fell due while nothing served them.

    Schedules stay active while the stack is stopped (see serve_all), so a night off left dozens of every-minute
    sweeps due at once; one catch-up run per deployment does what they would have done (a missed quarterly audit
    still runs, once). Only the scheduler's own runs go (auto-scheduled, never started): a Run a person asked for
    is kept. Returns how many were deleted.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    late = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC)),
    )
    removed = 0
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_run_filter=late, limit=200,
                                         deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)),
                                         sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC)
            missed: dict[Any, list[Any]] = {}
            for run in runs:
                if run.auto_scheduled and run.run_count == 0:
                    missed.setdefault(run.deployment_id, []).append(run)
            superseded = [run for per_deployment in missed.values() for run in per_deployment[:-1]]
            for run in superseded:
                client.delete_flow_run(run.id)
            removed += len(superseded)
            if len(runs) < 200 or not superseded:
                return removed
