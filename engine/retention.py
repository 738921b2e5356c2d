"""Run retention: finished flow runs leave Prefect's database after a while (Prefect keeps them forever).

A step of the engine loop (engine/loop.py, every OPS_RETENTION_SECONDS). Two horizons: the runs of engine-tagged
deployments (a deadline sweep or drill dispatch someone started by hand) go after OPS_ENGINE_RUN_RETENTION_DAYS,
every deployment's after OPS_RUN_RETENTION_DAYS (a year and a bit of history in the UI; the registry and its trail
are the record of what happened). Only runs in a terminal state (Completed, Failed, Cancelled, Crashed) that ended
before the horizon are deleted: a Paused or Suspended run waiting for a person, a Running, Pending or Scheduled
run is never touched, however old. Runs started without a deployment (a test's, a script's) are not ours to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from registry.clock import utcnow

ENGINE_TAG = "engine"
# Deleted per read; a call stops after _MAX_BATCHES of them, and the next turn of the loop goes on: a first start
# over a year of minute sweeps must not hold the loop (or the API) for minutes.
BATCH = 100
_MAX_BATCHES = 10


@dataclass
class RetentionReport:
    engine: int = 0  # runs of engine-tagged deployments deleted
    other: int = 0  # runs of every deployment past the general horizon

    @property
    def deleted(self) -> int:
        return self.engine + self.other


def _finished_before(before: datetime) -> Any:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    terminal = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
    return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=terminal)),
                         end_time=FlowRunFilterEndTime(before_=before),
                         deployment_id=FlowRunFilterDeploymentId(is_null_=False))


def _delete(client: Any, flow_run_filter: Any, deployment_filter: Any, budget: int) -> int:
    """Delete the matching runs, a batch at a time, at most `budget` of them; how many were deleted."""
    from prefect.exceptions import ObjectNotFound

    deleted = 0
    while deleted < budget:
        found = client.read_flow_runs(flow_run_filter=flow_run_filter, deployment_filter=deployment_filter,
                                      limit=min(BATCH, budget - deleted))
        for run in found:
            try:
                client.delete_flow_run(run.id)
            except ObjectNotFound:  # another loop's turn, or a person, deleted it first
                continue
            deleted += 1
        if len(found) < BATCH:
            return deleted
    return deleted


def delete_expired_runs(now: datetime | None = None, *, engine_days: float | None = None,
                        all_days: float | None = None, budget: int = BATCH * _MAX_BATCHES) -> RetentionReport:
    """Delete finished flow runs past their retention (see the module); how many of each kind were deleted.

    Horizons default to OPS_ENGINE_RUN_RETENTION_DAYS and OPS_RUN_RETENTION_DAYS; `budget` bounds one call.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.settings import get_current_settings

    from engine.settings import get_settings

    report = RetentionReport()
    if get_current_settings().api.url is None:  # no Prefect server: never start an ephemeral one for this
        return report
    settings = get_settings()
    now = now or utcnow()
    engine_before = now - timedelta(days=engine_days or settings.engine_run_retention_days)
    all_before = now - timedelta(days=all_days or settings.run_retention_days)
    with get_client(sync_client=True) as client:
        report.engine = _delete(client, _finished_before(engine_before),
                                DeploymentFilter(tags=DeploymentFilterTags(all_=[ENGINE_TAG])), budget)
        report.other = _delete(client, _finished_before(all_before), None, budget - report.engine)
    return report
