"""Crash take-over, written once: a run of one of our deployments whose process died is finished by a new run.

Every process is a state machine on the registry, so a new run of the same deployment with the same parameters
carries on from wherever the dead one stopped. What counts as dead:

- **Crashed**: the runner (or worker) saw the run's process exit without reporting a final state, e.g. kill -9
  of the flow-run process while `ops serve` lives on.
- **Gone**: the run is still RUNNING, its process (host:pid, recorded by `runs.stamp_process` as it starts) is on
  this machine and no longer exists, e.g. `ops serve` was killed with its children. Seen by the next sweep.
- **Stuck**: the run was claimed (PENDING) but its process never started, e.g. `ops serve` was killed just
  after claiming it: two minutes for a runner, three heartbeat intervals for a worker.
- **Silent**: the run is still RUNNING but has sent no heartbeat (`prefect.flow-run.heartbeat`, every
  `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds) for three intervals, e.g. `ops serve` was killed with its
  children on another machine, or that machine went away. Heartbeats are events on the Prefect API, so this
  works the same for one local `ops serve` and for workers on many machines, where a process id only says
  something on the machine that started the run; it takes three heartbeat intervals
  (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, 180 s by default: set it to 30 for 90 s).

Only runs of this registry are candidates (every run labels itself with it as it starts; one that never
started has no label and is ours to start). The new run is created with the idempotency key
`takeover-<dead run id>`, so two sweeps never start two. It is tagged with the id of the run that started the
lineage (`runs.origin_run_id()`), so a process keyed by its first run (an unscheduled drill) continues that
occasion instead of opening a new one.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import get_current_settings
from prefect.states import Crashed

from engine.runs import (
    GENERATION_TAG,
    ORIGIN_TAG,
    REGISTRY_LABEL,
    TAKEN_OVER_TAG,
    generation_of,
    origin_of,
    registry_id,
)
from registry import session, trail
from registry.clock import as_utc, utcnow

log = logging.getLogger(__name__)

_HEARTBEAT = "prefect.flow-run.heartbeat"
_MISSED_HEARTBEATS = 3
_PENDING_ON_A_RUNNER = timedelta(minutes=2)
_PROCESS_GRACE = timedelta(seconds=30)  # a run re-executed after a resume records its new process in this time
_EVENTS_PAGE = 50  # the events API's largest page
MAX_TAKEOVERS = 3  # a run that dies every time (a bug, not a crash) is left for a person after this many
LOOKBACK = timedelta(days=1)  # older dead runs are history (a stack left off for days), not work to carry on


@dataclass(frozen=True)
class TakeOver:
    dead: str
    new: str | None  # None: given up, the lineage died MAX_TAKEOVERS times
    deployment: str
    why: str


def silence_allowed() -> timedelta:
    """How long a running run may go without a heartbeat before it counts as dead."""
    frequency = get_current_settings().flows.heartbeat_frequency or 180
    return timedelta(seconds=_MISSED_HEARTBEATS * max(30, frequency))


def _candidates(client: SyncPrefectClient, since: datetime) -> list[FlowRun]:
    started = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(is_null_=False),
        start_time=FlowRunFilterStartTime(after_=since),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.CRASHED]))),
        sort=FlowRunSort.START_TIME_DESC, limit=200)
    # A run is PENDING from the moment its runner or worker claims it until its process starts: it has no
    # start time yet, and stays PENDING for good if the runner dies in between.
    claimed = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(is_null_=False),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))), limit=200)
    ours = registry_id()
    return [run for run in started + claimed
            if TAKEN_OVER_TAG not in run.tags and run.labels.get(REGISTRY_LABEL, ours) == ours]


def _heard_from(client: SyncPrefectClient, runs: list[FlowRun], since: datetime) -> set[str]:
    """Ids of the runs among `runs` that sent a heartbeat after `since`."""
    heard: set[str] = set()
    for start in range(0, len(runs), _EVENTS_PAGE):
        ids = [f"prefect.flow-run.{run.id}" for run in runs[start:start + _EVENTS_PAGE]]
        response = client._client.post("/events/filter", json={  # no public client call reads events
            "filter": {"occurred": {"since": since.isoformat(), "until": utcnow().isoformat()},
                       "event": {"name": [_HEARTBEAT]}, "resource": {"id": ids, "distinct": True}},
            "limit": _EVENTS_PAGE})
        response.raise_for_status()
        heard |= {event["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.")
                  for event in response.json()["events"]}
    return heard


def is_dead(run: FlowRun, silence: timedelta | None = None) -> bool:
    """Whether a RUNNING run's process is gone from this machine, or it has sent no heartbeat for longer than a
    live run may."""
    silence = silence or silence_allowed()
    now = utcnow()
    if process_gone(run, now):
        return True
    if run.state is None or now - as_utc(run.state.timestamp) < silence:
        return False
    with get_client(sync_client=True) as client:
        return str(run.id) not in _heard_from(client, [run], now - silence)


def _started_at(pid: int) -> datetime | None:
    """When process `pid` of this machine started; None when there is no such live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        booted = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                      if line.startswith("btime"))
    except (OSError, IndexError, StopIteration):
        return None
    if fields[0] in ("Z", "X"):  # dead, waiting to be reaped
        return None
    return datetime.fromtimestamp(booted + int(fields[19]) / os.sysconf("SC_CLK_TCK"), tz=UTC)


def process_gone(run: FlowRun, now: datetime) -> bool:
    """Whether the run's recorded process is on this machine and gone (or is another process reusing its pid)."""
    host, _, pid = (run.infrastructure_pid or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or run.state is None or not os.path.isdir("/proc"):
        return False
    entered = as_utc(run.state.timestamp)
    if now - entered < _PROCESS_GRACE:
        return False
    started = _started_at(int(pid))
    return started is None or started > entered + timedelta(seconds=2)


def _why_dead(run: FlowRun, heard: set[str], now: datetime, silence: timedelta) -> str | None:
    if run.state is None:
        return None
    if run.state.type == StateType.CRASHED:
        return f"crashed: {run.state.message or 'its process ended without a final state'}"
    entered = as_utc(run.state.timestamp)
    if run.state.type == StateType.PENDING:
        # A runner starts its process within seconds; a worker may first have to create a container.
        allowed = min(silence, _PENDING_ON_A_RUNNER) if run.work_pool_name is None else silence
        return f"pending for {allowed.total_seconds():.0f} s: nothing started it" if now - entered >= allowed else None
    if process_gone(run, now):
        return f"its process {run.infrastructure_pid} is gone"
    if str(run.id) in heard or now - entered < silence:
        return None
    return f"no heartbeat for {silence.total_seconds():.0f} s: its process is gone"


def _take_over(client: SyncPrefectClient, run: FlowRun, why: str) -> TakeOver:
    assert run.deployment_id is not None
    deployment = client.read_deployment(run.deployment_id)
    generation = generation_of(run.tags) + 1
    created: FlowRun | None = None
    if generation <= MAX_TAKEOVERS:
        kept = [tag for tag in run.tags if not tag.startswith((ORIGIN_TAG, GENERATION_TAG))]
        created = client.create_flow_run_from_deployment(
            run.deployment_id, parameters=dict(run.parameters), idempotency_key=f"takeover-{run.id}",
            tags=[*kept, f"{ORIGIN_TAG}{origin_of(run.tags, str(run.id))}", f"{GENERATION_TAG}{generation}"],
            name=f"{run.name} (taken over)")
    if run.state is not None and run.state.type != StateType.CRASHED:
        ending = f"taken over by flow run {created.id}" if created else "given up: it died too often"
        client.set_flow_run_state(run.id, Crashed(message=f"{why}; {ending}"), force=True)
    client.update_flow_run(run.id, tags=[*run.tags, TAKEN_OVER_TAG])
    return TakeOver(dead=str(run.id), new=str(created.id) if created else None, deployment=deployment.name,
                    why=why)


def take_over_dead_runs(*, silence: timedelta | None = None, since: datetime | None = None,
                        actor: str = "sweep") -> list[TakeOver]:
    """Start one new run for every dead run of a deployment started since `since` (default: within LOOKBACK);
    what was taken over. Each take-over is in the trail."""
    if get_current_settings().api.url is None:  # no Prefect server, no runs: never start an ephemeral one here
        return []
    silence = silence or silence_allowed()
    now = utcnow()
    since = since or now - LOOKBACK
    done: list[TakeOver] = []
    with get_client(sync_client=True) as client:
        candidates = _candidates(client, since)
        running = [run for run in candidates if run.state is not None and run.state.type == StateType.RUNNING]
        heard = _heard_from(client, running, now - silence) if running else set()
        for run in candidates:
            why = _why_dead(run, heard, now, silence)
            if why is None:
                continue
            try:
                done.append(_take_over(client, run, why))
            except Exception as error:  # one run that cannot be taken over (its deployment deleted) stops no other
                log.warning("could not take over flow run %s (%s): %s", run.id, why, error)
    for taken in done:
        log.warning("flow run %s (%s) %s; taken over by flow run %s", taken.dead, taken.deployment, taken.why,
                    taken.new or "none: given up")
        with session() as db:
            trail.record(db, actor=actor, action="run.taken_over" if taken.new else "run.given_up",
                         entity_type="flow_run", entity_id=0, data=_trail_data(taken))
    return done


def _trail_data(taken: TakeOver) -> dict[str, Any]:
    return {"dead_run": taken.dead, "new_run": taken.new, "deployment": taken.deployment, "why": taken.why,
            "after_takeovers": MAX_TAKEOVERS if taken.new is None else None}
